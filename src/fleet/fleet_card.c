/* The protocol converter's back end over a device's in-memory vse card
 * (fleet_priv.h): what conv_sock does over the vse socket, without the
 * socket. fleetsim links the card runtime and the agent (DESIGN.md 2). */
#include "fleet/fleet_priv.h"

#define FLEET_INS_DESTROY 0xDEu /* vse DESTROY (docs/vse.md), proprietary class */

static ot_err card_connect(void *impl, int timeout_ms, uint8_t *atr, size_t *atr_len)
{
    struct fleet_dev *d = impl;
    (void)timeout_ms;
    return se_card_power_on(d->card, atr, atr_len);
}

static ot_err card_transmit(void *impl, const uint8_t *cmd, size_t n, uint8_t *resp,
                            size_t *resp_len, int timeout_ms)
{
    struct fleet_dev *d = impl;
    bool destroy = n >= 4 && (cmd[0] & 0x80u) != 0 && cmd[1] == FLEET_INS_DESTROY;
    (void)timeout_ms;
    if (destroy) {
        fleet_destroy_seen(d, 0);
    }
    ot_err err = se_card_transmit(d->card, cmd, n, resp, resp_len);
    if (destroy) {
        /* the status word of the answer (in clear under SCP03); a mute card: 0001 */
        fleet_destroy_seen(d, err == OT_OK && *resp_len >= 2
                                  ? (uint16_t)((resp[*resp_len - 2] << 8) | resp[*resp_len - 1])
                                  : 0x0001u);
    }
    return err;
}

static void card_disconnect(void *impl)
{
    se_card_power_off(((struct fleet_dev *)impl)->card);
}

static bool card_present(void *impl)
{
    return !se_card_is_mute(((struct fleet_dev *)impl)->card);
}

static void card_free(void *impl)
{
    (void)impl; /* the device owns its card */
}

static const struct agent_be_ops card_ops = {
    .name = "vse-memory",
    .connect = card_connect,
    .transmit = card_transmit,
    .disconnect = card_disconnect,
    .present = card_present,
    .free = card_free,
};

const struct agent_be_ops *fleet_card_be(void)
{
    return &card_ops;
}
