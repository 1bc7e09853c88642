/* payterm's authentication module (payterm.h): the client is known to pay
 * by its device token and its enrolment (payterm.c, pay_client); the
 * customer's card is authenticated by the dongle, which checks the card's
 * application cryptogram with the card key it derives from the SP's key,
 * before any request leaves. */
#include "payterm/pt_priv.h"

#include "core/buf.h"
#include "crypto/paycard.h"

#include <string.h>

ot_err pt_auth_card(struct pt *t, const char *sp, const char *pan, uint16_t atc,
                    const uint8_t ac[8], const uint8_t *data, size_t n)
{
    uint8_t req[1 + 10 + 2 + 8 + 64];
    size_t bn = 0;
    size_t len = 0;
    uint16_t sw = 0;
    ot_err err;

    if (n > 64) {
        return OT_E_ARG;
    }
    err = paycard_pan_bcd(pan, req + 1, &bn);
    if (err != OT_OK) {
        return err;
    }
    req[0] = (uint8_t)bn;
    len = 1 + bn;
    ot_put_u16be(req + len, atc);
    len += 2;
    memcpy(req + len, ac, 8);
    len += 8;
    memcpy(req + len, data, n);
    len += n;
    err = pt_sam_cmd(t, 0xA0, 0x00, sp, req, len, NULL, NULL, &sw);
    if (err == OT_OK && sw != 0x9000) {
        /* 6A88: no key of this SP in the dongle; else the card is not genuine */
        err = sw == 0x6A88 ? OT_E_NOT_FOUND : OT_E_CARD_CRYPTOGRAM;
    }
    return err;
}
