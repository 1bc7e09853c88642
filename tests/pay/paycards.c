/* Cards for the payment tests (paycards.h). */
#include "paycards.h"

#include "core/buf.h"
#include "core/hex.h"
#include "crypto/ecwrap.h"
#include "crypto/paycard.h"

#include <string.h>

#define K40 "404142434445464748494A4B4C4D4E4F"
#define ISD                                                                                   \
    "\"isd\":{\"aid\":\"A000000151000000\",\"privileges\":\"9EFE80\",\"scp\":3,\"i\":\"10\"," \
    "\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"" K40 "\",\"mac\":\"" K40               \
    "\",\"dek\":\"" K40 "\"}]},"                                                              \
    "\"packages\":[{\"module\":\"emv-payment\"},{\"module\":\"transit\"},{\"module\":\"sam\"}],"

size_t pc_unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = cap;
    PC_CHECK(hex_decode(hex, strlen(hex), out, &n) == OT_OK);
    return n;
}

void pc_card_new(struct pc_card *k, const char *apps)
{
    char json[2048];
    uint8_t atr[SE_MAX_ATR];
    size_t al = sizeof atr;
    snprintf(json, sizeof json,
             "{\"type\":\"eSE\",\"card_lcs\":\"SECURED\"," ISD "\"applications\":[%s]}", apps);
    PC_CHECK(se_card_from_profile(json, strlen(json), &k->c) == OT_OK);
    PC_CHECK(se_card_power_on(k->c, atr, &al) == OT_OK);
}

void pc_card_free(struct pc_card *k)
{
    se_card_free(k->c);
    k->c = NULL;
}

uint16_t pc_txb(struct pc_card *k, const uint8_t *cmd, size_t n)
{
    uint8_t r[SE_MAX_RESP];
    size_t rl = sizeof r;
    uint8_t gr[5] = {0x00, 0xC0, 0x00, 0x00, 0x00};
    k->rlen = 0;
    PC_CHECK(se_card_transmit(k->c, cmd, n, r, &rl) == OT_OK);
    for (;;) {
        PC_CHECK(rl >= 2);
        uint16_t sw = ot_get_u16be(r + rl - 2);
        memcpy(k->resp + k->rlen, r, rl - 2);
        k->rlen += rl - 2;
        if ((sw >> 8) != 0x61) {
            return sw;
        }
        gr[4] = (uint8_t)sw;
        rl = sizeof r;
        PC_CHECK(se_card_transmit(k->c, gr, sizeof gr, r, &rl) == OT_OK);
    }
}

uint16_t pc_tx(struct pc_card *k, const char *hex)
{
    uint8_t cmd[300];
    return pc_txb(k, cmd, pc_unhex(hex, cmd, sizeof cmd));
}

uint16_t pc_select(struct pc_card *k, const char *aid)
{
    char cmd[64];
    snprintf(cmd, sizeof cmd, "00A40400%02zX%s00", strlen(aid) / 2, aid);
    return pc_tx(k, cmd);
}

void pc_dongle_new(struct pc_card *d, const char *dongle_id)
{
    char apps[256], idh[2 * 32 + 1];
    size_t n = strlen(dongle_id);
    PC_CHECK(n >= 1 && n <= 32);
    PC_CHECK(hex_encode((const uint8_t *)dongle_id, n, idh, sizeof idh) == OT_OK);
    snprintf(apps, sizeof apps,
             "{\"aid\":\"" PC_SAM "\",\"package\":\"F04F54534D06\",\"params\":\"DF10%02zX%s\"}", n,
             idh);
    pc_card_new(d, apps);
}

uint16_t pc_sam(struct pc_card *d, uint8_t ins, uint8_t p1, const char *sp, const uint8_t *rest,
                size_t n)
{
    uint8_t cmd[300] = {0x80, ins, p1, 0x00};
    size_t spl = strlen(sp);
    PC_CHECK(6 + spl + n <= sizeof cmd);
    cmd[4] = (uint8_t)(1 + spl + n);
    cmd[5] = (uint8_t)spl;
    memcpy(cmd + 6, sp, spl);
    memcpy(cmd + 6 + spl, rest, n);
    PC_CHECK(pc_select(d, PC_SAM) == 0x9000);
    return pc_txb(d, cmd, 6 + spl + n);
}

uint16_t pc_sam_load(struct pc_card *d, const uint8_t *blob, size_t n)
{
    uint8_t cmd[5 + ECWRAP_MAX_BLOB] = {0x80, 0xD8, 0x00, 0x00};
    PC_CHECK(n <= ECWRAP_MAX_BLOB);
    cmd[4] = (uint8_t)n;
    memcpy(cmd + 5, blob, n);
    PC_CHECK(pc_select(d, PC_SAM) == 0x9000);
    return pc_txb(d, cmd, 5 + n);
}

void pc_sam_pub(struct pc_card *d, uint8_t pub[65])
{
    PC_CHECK(pc_select(d, PC_SAM) == 0x9000);
    PC_CHECK(pc_tx(d, "80CADF1100") == 0x9000);
    PC_CHECK(d->rlen == 65);
    memcpy(pub, d->resp, 65);
}

static void pc_derive_hex(const char *imk_hex, uint8_t dc, const uint8_t *id, size_t n, char *out)
{
    uint8_t imk[16], k[16];
    pc_unhex(imk_hex, imk, sizeof imk);
    PC_CHECK(paycard_derive(imk, 16, dc, id, n, k) == OT_OK);
    PC_CHECK(hex_encode(k, 16, out, 33) == OT_OK);
}

void pc_customer_new(struct pc_card *k, const char *pan, const char *imk_hex,
                     const char *transit_imk_hex)
{
    uint8_t bcd[10], pid[8];
    size_t bn = 0;
    char mk[33], tk[33], apps[1024];
    PC_CHECK(paycard_pan_bcd(pan, bcd, &bn) == OT_OK);
    pc_derive_hex(imk_hex, PAYCARD_DC_EMV_AC, bcd, bn, mk);
    int n =
        snprintf(apps, sizeof apps,
                 "{\"aid\":\"" PC_EMV "\",\"package\":\"F04F54534D02\",\"params\":\"5A08%sDF0110"
                 "%sDF020431323334\"}",
                 pan, mk);
    if (transit_imk_hex != NULL) {
        pc_unhex(PC_PURSE, pid, sizeof pid);
        pc_derive_hex(transit_imk_hex, PAYCARD_DC_TRANSIT, pid, 8, tk);
        snprintf(apps + n, sizeof apps - (size_t)n,
                 ",{\"aid\":\"" PC_PURSEA "\",\"package\":\"F04F54534D03\",\"params\":\"DF0110%s"
                 "DF0408" PC_PURSE "DF0504000003E8\"}",
                 tk);
    }
    pc_card_new(k, apps);
}

void pc_payment(struct pc_card *d, struct pc_card *card, const char *sp, const char *pan,
                const char *pin, int64_t amount, struct pay_msg *m)
{
    uint8_t cdol[29 + 4], cmd[5 + 29 + 1] = {0x80, 0xAE, 0x80, 0x00, 29};
    uint8_t req[128], bcd[10], ac[8];
    size_t bn = 0, n = 0;
    int64_t a = amount;

    /* the card: GPO, then GENERATE AC (ARQC) over CDOL1 with this amount */
    memset(cdol, 0, sizeof cdol);
    for (int i = 5; i >= 0; i--) {
        cdol[i] = (uint8_t)(((a / 10) % 10) << 4 | (a % 10));
        a /= 100;
    }
    cdol[17] = 0x09; /* currency 0978 (EUR) */
    cdol[18] = 0x78;
    memcpy(cdol + 25, "\x12\x34\x56\x78", 4); /* unpredictable number */
    PC_CHECK(pc_select(card, PC_EMV) == 0x9000);
    PC_CHECK(pc_tx(card, "80A8000002830000") == 0x9000);
    memcpy(cmd + 5, cdol, 29);
    PC_CHECK(pc_txb(card, cmd, sizeof cmd) == 0x9000);
    /* 77 1E 9F27 01 cid 9F36 02 atc 9F26 08 ac 9F10 07 iad */
    PC_CHECK(card->rlen == 32);
    PC_CHECK(memcmp(card->resp + 6, "\x9F\x36\x02", 3) == 0);
    PC_CHECK(memcmp(card->resp + 11, "\x9F\x26\x08", 3) == 0);
    uint16_t atc = ot_get_u16be(card->resp + 9);
    memcpy(ac, card->resp + 14, 8);
    memcpy(cdol + 29, "\x18\x00", 2); /* AIP, then ATC: the whole MAC input */
    ot_put_u16be(cdol + 31, atc);

    /* the dongle: the card is genuine for this SP, and the PIN block */
    PC_CHECK(paycard_pan_bcd(pan, bcd, &bn) == OT_OK);
    req[n++] = (uint8_t)bn;
    memcpy(req + n, bcd, bn);
    n += bn;
    ot_put_u16be(req + n, atc);
    n += 2;
    memcpy(req + n, ac, 8);
    n += 8;
    memcpy(req + n, cdol, sizeof cdol);
    n += sizeof cdol;
    PC_CHECK(pc_sam(d, 0xA0, 0, sp, req, n) == 0x9000);
    n = 0;
    req[n++] = (uint8_t)strlen(pan);
    memcpy(req + n, pan, strlen(pan));
    n += strlen(pan);
    req[n++] = (uint8_t)strlen(pin);
    memcpy(req + n, pin, strlen(pin));
    n += strlen(pin);
    PC_CHECK(pc_sam(d, 0xA2, 0, sp, req, n) == 0x9000);
    PC_CHECK(d->rlen == 16);

    pay_msg_set_int(m, PAY_F_AMOUNT, amount);
    PC_CHECK(pay_msg_set_str(m, PAY_F_CURRENCY, "EUR") == OT_OK);
    PC_CHECK(pay_msg_set_str(m, PAY_F_MERCHANT, "Kiosk 7") == OT_OK);
    PC_CHECK(pay_msg_set_str(m, PAY_F_PAN, pan) == OT_OK);
    pay_msg_set_int(m, PAY_F_ATC, atc);
    PC_CHECK(pay_msg_set_bytes(m, PAY_F_CDOL, cdol, sizeof cdol) == OT_OK);
    PC_CHECK(pay_msg_set_bytes(m, PAY_F_AC, ac, 8) == OT_OK);
    PC_CHECK(pay_msg_set_bytes(m, PAY_F_PIN_BLOCK, d->resp, 16) == OT_OK);
}
