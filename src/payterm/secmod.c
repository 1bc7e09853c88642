/* payterm's security module (payterm.h): the dongle's SAM applet
 * (docs/applets.md "sam"). The SP keys are in it and never leave it. */
#include "payterm/pt_priv.h"

#include "agent/conv.h"
#include "core/buf.h"

#include <string.h>

#define PT_SAM_AID "\xF0\x4F\x54\x53\x4D\x06\x01\xAA"

ot_err pt_sam_cmd(struct pt *t, uint8_t ins, uint8_t p1, const char *sp, const uint8_t *rest,
                  size_t n, uint8_t *resp, size_t *rlen, uint16_t *sw)
{
    uint8_t cmd[5 + 255 + 1] = {0x80, ins, p1, 0x00};
    uint8_t r[258];
    size_t rl = sizeof(r);
    size_t spl = sp != NULL ? strlen(sp) : 0;
    size_t lc = (sp != NULL ? 1 + spl : 0) + n;
    size_t len = 5;
    ot_err err;

    if (lc > 255) {
        return OT_E_ARG;
    }
    cmd[4] = (uint8_t)lc;
    if (sp != NULL) {
        cmd[len++] = (uint8_t)spl;
        memcpy(cmd + len, sp, spl);
        len += spl;
    }
    if (n > 0) {
        memcpy(cmd + len, rest, n);
        len += n;
    }
    if (lc == 0) {
        len = 4;
    }
    if (resp != NULL) {
        cmd[len++] = 0x00; /* Le */
    }
    err = agent_channel_transmit(t->sam, cmd, len, r, &rl);
    ot_mem_wipe(cmd, sizeof(cmd)); /* a PIN BLOCK command carries PAN and PIN */
    if (err != OT_OK) {
        return err;
    }
    *sw = ot_get_u16be(r + rl - 2);
    if (resp != NULL) {
        if (rl - 2 > *rlen) {
            return OT_E_BUF_SMALL;
        }
        memcpy(resp, r, rl - 2);
        *rlen = rl - 2;
    }
    return OT_OK;
}

ot_err pt_sam_pub(struct pt *t, uint8_t pub[65])
{
    static const uint8_t get[5] = {0x80, 0xCA, 0xDF, 0x11, 0x00};
    uint8_t r[128];
    size_t rl = sizeof(r);
    ot_err err = agent_channel_transmit(t->sam, get, sizeof(get), r, &rl);

    if (err != OT_OK) {
        return err;
    }
    if (rl != 67 || ot_get_u16be(r + 65) != 0x9000) {
        return OT_E_PROTOCOL;
    }
    memcpy(pub, r, 65);
    return OT_OK;
}

ot_err pt_sam_load(struct pt *t, const uint8_t *blob, size_t n, uint16_t *sw)
{
    uint8_t r[16];
    size_t rl = sizeof(r);

    return pt_sam_cmd(t, 0xD8, 0x00, NULL, blob, n, r, &rl, sw);
}

ot_err pt_sam_revoke(struct pt *t, const char *sp, uint8_t kt, uint32_t floor, uint16_t *sw)
{
    uint8_t f[4];

    ot_put_u32be(f, floor);
    return pt_sam_cmd(t, 0xDA, kt, sp, f, sizeof(f), NULL, NULL, sw);
}

ot_err pt_sam_pin_block(struct pt *t, const char *sp, const char *pan, const char *pin,
                        uint8_t pb[16])
{
    uint8_t req[2 + 19 + 12];
    uint8_t r[32];
    size_t rl = sizeof(r);
    size_t pl = strlen(pan);
    size_t nl = strlen(pin);
    uint16_t sw = 0;
    ot_err err;

    if (pl > 19 || nl > 12) {
        return OT_E_ARG;
    }
    req[0] = (uint8_t)pl;
    memcpy(req + 1, pan, pl);
    req[1 + pl] = (uint8_t)nl;
    memcpy(req + 2 + pl, pin, nl);
    err = pt_sam_cmd(t, 0xA2, 0x00, sp, req, 2 + pl + nl, r, &rl, &sw);
    ot_mem_wipe(req, sizeof(req));
    if (err == OT_OK && (sw != 0x9000 || rl != 16)) {
        err = sw == 0x6A88 ? OT_E_NOT_FOUND : OT_E_SW;
    }
    if (err == OT_OK) {
        memcpy(pb, r, 16);
    }
    return err;
}

ot_err pt_sam_transit(struct pt *t, uint8_t p1, const char *sp, const uint8_t purse[8], uint32_t a,
                      uint32_t counter, const uint8_t mac[8])
{
    uint8_t req[24];
    uint16_t sw = 0;
    ot_err err;

    memcpy(req, purse, 8);
    ot_put_u32be(req + 8, a);
    ot_put_u32be(req + 12, counter);
    memcpy(req + 16, mac, 8);
    err = pt_sam_cmd(t, 0xA4, p1, sp, req, sizeof(req), NULL, NULL, &sw);
    if (err == OT_OK && sw != 0x9000) {
        err = sw == 0x6A88 ? OT_E_NOT_FOUND : OT_E_CMAC;
    }
    return err;
}
