/* Fuzz target: the frame parsers of the vse transports (src/se/transport.h).
 *
 * The input is a byte stream as a client would send it. The first byte picks
 * the protocol: even = OpenTSM socket frames, odd = vpcd messages. Socket
 * frames are parsed one after the other and each is answered by
 * se_sock_process against a small scripted card, exactly as the server does;
 * the answer must be a well-formed frame within the caps. vpcd messages are
 * split the same way. Any crash, over-read or leak is a finding.
 */
#include "core/vseframe.h"
#include "se/transport.h"

#include "core/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct fz_card {
    int powered;
};

static ot_err fz_power_on(void *card, uint8_t *atr, size_t *atr_len)
{
    static const uint8_t a[] = {0x3B, 0x80, 0x80, 0x01, 0x01};
    ((struct fz_card *)card)->powered = 1;
    memcpy(atr, a, sizeof a);
    *atr_len = sizeof a;
    return OT_OK;
}

static void fz_power_off(void *card)
{
    ((struct fz_card *)card)->powered = 0;
}

/* Echoes the command back (up to the response cap) with 9000, or fails the
 * way a card can (unpowered: OT_E_NO_CARD; INS 0xEE: OT_E_DB). */
static ot_err fz_transmit(void *card, const uint8_t *cmd, size_t n, uint8_t *resp, size_t *resp_len)
{
    size_t m = n > *resp_len - 2 ? *resp_len - 2 : n;

    if (!((struct fz_card *)card)->powered) {
        return OT_E_NO_CARD;
    }
    if (n > 1 && cmd[1] == 0xEE) {
        return OT_E_DB;
    }
    if (m > 0) {
        memcpy(resp, cmd, m);
    }
    resp[m] = 0x90;
    resp[m + 1] = 0x00;
    *resp_len = m + 2;
    return OT_OK;
}

static const struct se_tp_card_ops fz_ops = {fz_power_on, fz_power_off, fz_transmit};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[VSE_SOCK_HDR + SE_TP_MAX_RESP];
    struct fz_card card = {0};
    struct vse_sock_frame f, g;
    const uint8_t *m;
    size_t used, mlen, olen, gu;
    size_t off = 1;
    const char *text;
    size_t tl;
    ot_err code;

    if (size == 0) {
        return 0;
    }
    if ((data[0] & 1u) == 0) {
        while (off < size && vse_sock_frame_parse(data + off, size - off, &f, &used) == OT_OK) {
            olen = sizeof out;
            if (se_sock_process(&fz_ops, &card, &f, out, &olen) != OT_OK) {
                abort();
            }
            /* The answer is one complete frame of exactly olen bytes. */
            if (vse_sock_frame_parse(out, olen, &g, &gu) != OT_OK || gu != olen
                || (g.type != VSE_SOCK_ERROR && g.type != (f.type | VSE_SOCK_REPLY))) {
                abort();
            }
            /* An error frame carries a code and a text within the cap. */
            if (g.type == VSE_SOCK_ERROR && vse_sock_error_parse(&g, &code, &text, &tl) != OT_OK) {
                abort();
            }
            off += used;
        }
    } else {
        while (off < size
               && se_vpcd_frame_parse(data + off, size - off, &m, &mlen, &used) == OT_OK) {
            if (used != mlen + 2 || m != data + off + 2) {
                abort();
            }
            off += used;
        }
    }
    return 0;
}
