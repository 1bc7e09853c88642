/* The protocol converter's back end over an in-memory vse card
 * (fleet_priv.h): what conv_sock does over the vse socket, without the
 * socket. fleetsim links the card runtime and the agent (DESIGN.md 2). */
#include "fleet/fleet_priv.h"

static ot_err card_connect(void *impl, int timeout_ms, uint8_t *atr, size_t *atr_len)
{
    (void)timeout_ms;
    return se_card_power_on(impl, atr, atr_len);
}

static ot_err card_transmit(void *impl, const uint8_t *cmd, size_t n, uint8_t *resp,
                            size_t *resp_len, int timeout_ms)
{
    (void)timeout_ms;
    return se_card_transmit(impl, cmd, n, resp, resp_len);
}

static void card_disconnect(void *impl)
{
    se_card_power_off(impl);
}

static bool card_present(void *impl)
{
    return !se_card_is_mute(impl);
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
