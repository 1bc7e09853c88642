/* payterm's RF read/write module (payterm.h): the customer's card on the
 * RF reader - its payment application (emv-payment) and its transit purse
 * (docs/applets.md). */
#include "payterm/pt_priv.h"

#include "agent/conv.h"
#include "core/buf.h"

#include <string.h>

static const uint8_t pt_emv_aid[] = {0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10};
static const uint8_t pt_purse_aid[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x03, 0x01, 0xAA};

/* SELECT then one command; the answer's data and its status. */
static ot_err pt_rf_tx(struct pt *t, const uint8_t *aid, size_t aid_len, const uint8_t *cmd,
                       size_t n, uint8_t *resp, size_t *rlen, uint16_t *sw)
{
    uint8_t sel[5 + 16 + 1] = {0x00, 0xA4, 0x04, 0x00};
    uint8_t r[258];
    size_t rl = sizeof(r);
    ot_err err;

    if (aid != NULL) {
        sel[4] = (uint8_t)aid_len;
        memcpy(sel + 5, aid, aid_len);
        sel[5 + aid_len] = 0x00;
        err = agent_channel_transmit(t->rf, sel, 6 + aid_len, r, &rl);
        if (err != OT_OK) {
            return err;
        }
        if (ot_get_u16be(r + rl - 2) != 0x9000) {
            return OT_E_SW_NOT_FOUND; /* not this kind of card */
        }
        rl = sizeof(r);
    }
    err = agent_channel_transmit(t->rf, cmd, n, r, &rl);
    if (err != OT_OK) {
        return err;
    }
    *sw = ot_get_u16be(r + rl - 2);
    if (rl - 2 > *rlen) {
        return OT_E_BUF_SMALL;
    }
    memcpy(resp, r, rl - 2);
    *rlen = rl - 2;
    return OT_OK;
}

ot_err pt_rf_pan(struct pt *t, char pan[20])
{
    static const uint8_t rr[5] = {0x00, 0xB2, 0x01, 0x0C, 0x00}; /* SFI 1 record 1 */
    uint8_t r[256];
    size_t rl = sizeof(r);
    size_t i;
    size_t end;
    uint16_t sw = 0;
    ot_err err = pt_rf_tx(t, pt_emv_aid, sizeof(pt_emv_aid), rr, sizeof(rr), r, &rl, &sw);

    if (err != OT_OK) {
        return err;
    }
    if (sw != 0x9000 || rl < 2 || r[0] != 0x70 || r[1] >= 0x80) {
        return OT_E_PROTOCOL;
    }
    end = 2 + (size_t)r[1];
    if (end > rl) {
        return OT_E_TRUNCATED;
    }
    for (i = 2; i + 2 <= end;) {
        unsigned tag = r[i++];
        size_t len;
        if ((tag & 0x1Fu) == 0x1Fu) {
            tag = tag << 8 | r[i++];
        }
        if (i >= end || r[i] >= 0x80) {
            return OT_E_TLV;
        }
        len = r[i++];
        if (i + len > end) {
            return OT_E_TLV;
        }
        if (tag == 0x5Au && len >= 6 && len <= 10) {
            size_t d = 0;
            for (size_t k = 0; k < 2 * len; k++) {
                uint8_t nib = (uint8_t)(k % 2 == 0 ? r[i + k / 2] >> 4 : r[i + k / 2] & 0x0F);
                if (nib == 0x0F) {
                    break;
                }
                if (nib > 9) {
                    return OT_E_FORMAT;
                }
                pan[d++] = (char)('0' + nib);
            }
            pan[d] = '\0';
            return d >= 12 ? OT_OK : OT_E_FORMAT;
        }
        i += len;
    }
    return OT_E_NOT_FOUND;
}

ot_err pt_rf_ac(struct pt *t, int64_t amount, uint8_t ac[8], uint16_t *atc, uint8_t cdol[33])
{
    static const uint8_t gpo[8] = {0x80, 0xA8, 0x00, 0x00, 0x02, 0x83, 0x00, 0x00};
    uint8_t cmd[5 + 29 + 1] = {0x80, 0xAE, 0x80, 0x00, 29};
    uint8_t r[256];
    size_t rl = sizeof(r);
    uint16_t sw = 0;
    int64_t a = amount;
    ot_err err;

    /* CDOL1: amount (n12 BCD), other amount, country, TVR, currency 0978,
     * date, type, unpredictable number */
    memset(cdol, 0, 33);
    for (int i = 5; i >= 0; i--) {
        cdol[i] = (uint8_t)(((a / 10) % 10) << 4 | (a % 10));
        a /= 100;
    }
    cdol[17] = 0x09;
    cdol[18] = 0x78;
    memcpy(cdol + 25, "\x12\x34\x56\x78", 4);
    err = pt_rf_tx(t, pt_emv_aid, sizeof(pt_emv_aid), gpo, sizeof(gpo), r, &rl, &sw);
    if (err != OT_OK || sw != 0x9000) {
        return err != OT_OK ? err : OT_E_SW;
    }
    memcpy(cmd + 5, cdol, 29);
    rl = sizeof(r);
    err = pt_rf_tx(t, NULL, 0, cmd, sizeof(cmd), r, &rl, &sw);
    if (err != OT_OK || sw != 0x9000) {
        return err != OT_OK ? err : OT_E_SW;
    }
    /* 77 1E 9F27 01 cid 9F36 02 atc 9F26 08 ac 9F10 07 iad */
    if (rl != 32 || memcmp(r + 6, "\x9F\x36\x02", 3) != 0
        || memcmp(r + 11, "\x9F\x26\x08", 3) != 0) {
        return OT_E_PROTOCOL;
    }
    *atc = ot_get_u16be(r + 9);
    memcpy(ac, r + 14, 8);
    cdol[29] = 0x18; /* AIP, then ATC: the whole MAC input */
    cdol[30] = 0x00;
    ot_put_u16be(cdol + 31, *atc);
    return OT_OK;
}

ot_err pt_rf_purse(struct pt *t, uint32_t *balance, uint32_t *counter, uint8_t purse[8])
{
    static const uint8_t get[5] = {0x80, 0x5C, 0x01, 0x00, 0x10};
    uint8_t r[64];
    size_t rl = sizeof(r);
    uint16_t sw = 0;
    ot_err err = pt_rf_tx(t, pt_purse_aid, sizeof(pt_purse_aid), get, sizeof(get), r, &rl, &sw);

    if (err != OT_OK) {
        return err;
    }
    if (sw != 0x9000 || rl != 16) {
        return OT_E_PROTOCOL;
    }
    *balance = ot_get_u32be(r);
    *counter = ot_get_u32be(r + 4);
    memcpy(purse, r + 8, 8);
    return OT_OK;
}

ot_err pt_rf_credit(struct pt *t, uint32_t amount, uint32_t counter, const uint8_t mac[8],
                    uint32_t *balance, uint32_t *new_counter, uint8_t proof[8])
{
    uint8_t cmd[5 + 16 + 1] = {0x80, 0x52, 0x00, 0x00, 0x10};
    uint8_t r[64];
    size_t rl = sizeof(r);
    uint16_t sw = 0;
    ot_err err;

    ot_put_u32be(cmd + 5, amount);
    ot_put_u32be(cmd + 9, counter);
    memcpy(cmd + 13, mac, 8);
    err = pt_rf_tx(t, pt_purse_aid, sizeof(pt_purse_aid), cmd, sizeof(cmd), r, &rl, &sw);
    if (err != OT_OK) {
        return err;
    }
    if (sw != 0x9000 || rl != 16) {
        return sw == 0x6982 ? OT_E_CMAC : OT_E_SW;
    }
    *balance = ot_get_u32be(r);
    *new_counter = ot_get_u32be(r + 4);
    memcpy(proof, r + 8, 8);
    return OT_OK;
}

ot_err pt_rf_relay(struct pt *t, const uint8_t *capdu, size_t n, uint8_t *rapdu, size_t *rlen)
{
    ot_err err = agent_channel_transmit(t->rf, capdu, n, rapdu, rlen);

    if (err == OT_OK && *rlen < 2) {
        return OT_E_PROTOCOL;
    }
    return err;
}

ot_err pt_rf_debit(struct pt *t, uint32_t amount, uint32_t *balance, uint16_t *sw)
{
    uint8_t cmd[5 + 4 + 1] = {0x80, 0x54, 0x00, 0x00, 0x04};
    uint8_t r[16];
    size_t rl = sizeof(r);
    ot_err err;

    ot_put_u32be(cmd + 5, amount);
    err = pt_rf_tx(t, pt_purse_aid, sizeof(pt_purse_aid), cmd, sizeof(cmd), r, &rl, sw);
    if (err != OT_OK) {
        return err;
    }
    if (*sw == 0x9000 && rl == 4) {
        *balance = ot_get_u32be(r);
    } else if (*sw == 0x9000) {
        return OT_E_PROTOCOL;
    }
    return OT_OK;
}
