/* vse transports: the card ops of struct se_card, the shared helpers and the
 * poll() loop that multiplexes endpoints. */
#define OT_LOG_COMPONENT "se.transport"
#include "se/transport.h"

#include "core/log.h"
#include "se/card.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(SE_TP_MAX_ATR == SE_MAX_ATR, "ATR caps agree");
_Static_assert(SE_TP_MAX_RESP == SE_MAX_RESP, "response caps agree");

static ot_err tp_vse_power_on(void *card, uint8_t *atr, size_t *atr_len)
{
    return se_card_power_on(card, atr, atr_len);
}

static void tp_vse_power_off(void *card)
{
    se_card_power_off(card);
}

static ot_err tp_vse_transmit(void *card, const uint8_t *cmd, size_t n, uint8_t *resp,
                              size_t *resp_len)
{
    return se_card_transmit(card, cmd, n, resp, resp_len);
}

const struct se_tp_card_ops se_tp_card_vse = {
    .power_on = tp_vse_power_on,
    .power_off = tp_vse_power_off,
    .transmit = tp_vse_transmit,
};

ot_err se_tp_card_exchange(const struct se_tp_card_ops *ops, void *card, const uint8_t *cmd,
                           size_t n, uint8_t *resp, size_t *resp_len)
{
    size_t cap = *resp_len;
    ot_err err;

    if (cap < 2) {
        *resp_len = SE_TP_MAX_RESP;
        return OT_E_BUF_SMALL;
    }
    err = ops->transmit(card, cmd, n, resp, resp_len);
    if (err == OT_OK || err == OT_E_NO_CARD) {
        return err;
    }
    /* card.h: OT_E_DB means the image could not be written and the command
     * was rolled back; the card's own answer would have been 6581 (memory
     * failure, ISO 7816-4 Table 6). Anything else is a failure of the card
     * program itself: 6F00 (no precise diagnosis). */
    OT_LOG_ERROR("card failed a command: %s", ot_strerror(err));
    resp[0] = err == OT_E_DB ? 0x65 : 0x6F;
    resp[1] = err == OT_E_DB ? 0x81 : 0x00;
    *resp_len = 2;
    return OT_OK;
}

void se_tp_ep_free(struct se_tp_ep *ep)
{
    if (ep == NULL) {
        return;
    }
    if (ep->ops != NULL && ep->ops->free != NULL) {
        ep->ops->free(ep->impl);
    }
    free(ep);
}

ot_err se_tp_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port)
{
    const char *colon;
    size_t hlen;
    unsigned long v = 0;
    const char *q;

    if (s == NULL || host == NULL || port == NULL || cap == 0) {
        return OT_E_ARG;
    }
    colon = strrchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0') {
        return OT_E_FORMAT;
    }
    hlen = (size_t)(colon - s);
    /* "[::1]:35963": brackets around an IPv6 address are dropped. */
    if (s[0] == '[' && hlen >= 2 && s[hlen - 1] == ']') {
        s++;
        hlen -= 2;
        if (hlen == 0) {
            return OT_E_FORMAT;
        }
    }
    if (hlen >= cap) {
        return OT_E_TOO_LONG;
    }
    for (q = colon + 1; *q != '\0'; q++) {
        if (*q < '0' || *q > '9' || q - colon > 5) {
            return OT_E_FORMAT;
        }
        v = v * 10u + (unsigned long)(*q - '0');
    }
    if (v > 65535u) {
        return OT_E_FORMAT;
    }
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)v;
    return OT_OK;
}

ot_err se_tp_loop_once(struct se_tp_ep *const *eps, size_t n, int wake_fd, int timeout_ms,
                       bool *woken)
{
    struct pollfd pfd[SE_TP_MAX_POLLFDS];
    size_t cnt[64];
    size_t used = 0;
    size_t i;
    int tmo = timeout_ms;
    int rc;

    if (woken != NULL) {
        *woken = false;
    }
    if (n > sizeof cnt / sizeof cnt[0]) {
        return OT_E_LIMIT;
    }
    if (wake_fd >= 0) {
        pfd[used].fd = wake_fd;
        pfd[used].events = POLLIN;
        pfd[used].revents = 0;
        used++;
    }
    for (i = 0; i < n; i++) {
        cnt[i] = eps[i]->ops->pollfds(eps[i]->impl, pfd + used, SE_TP_MAX_POLLFDS - used, &tmo);
        used += cnt[i];
    }
    if (timeout_ms >= 0 && (tmo < 0 || tmo > timeout_ms)) {
        tmo = timeout_ms;
    }
    rc = poll(pfd, (nfds_t)used, tmo);
    if (rc < 0) {
        if (errno != EINTR) {
            OT_LOG_ERROR("poll: %s", strerror(errno));
            return OT_E_IO;
        }
        for (i = 0; i < used; i++) {
            pfd[i].revents = 0;
        }
    }
    used = 0;
    if (wake_fd >= 0) {
        if (woken != NULL && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            *woken = true;
        }
        used++;
    }
    for (i = 0; i < n; i++) {
        eps[i]->ops->dispatch(eps[i]->impl, pfd + used, cnt[i]);
        used += cnt[i];
    }
    return OT_OK;
}

ot_err se_tp_loop_run(struct se_tp_ep *const *eps, size_t n, int wake_fd,
                      const volatile sig_atomic_t *stop)
{
    ot_err err = OT_OK;
    bool woken = false;

    while (stop == NULL || *stop == 0) {
        /* A 1 s cap bounds the reaction to *stop when no wake_fd is given. */
        err = se_tp_loop_once(eps, n, wake_fd, 1000, &woken);
        if (err != OT_OK || woken) {
            break;
        }
    }
    return err;
}
