/* vse transport to vsmartcard's vpcd (the pcscd driver of a virtual reader).
 *
 * vpcd listens on a TCP port per reader slot (reader.conf CHANNELID, default
 * 0x8C7B = 35963, slot k on port + k); the virtual card connects to it. The
 * protocol (virtualsmartcard src/vpcd/vpcd.c, sendToVICC / recvFromVICC):
 * each message is a 2-byte big-endian length followed by the payload, in both
 * directions. vpcd sends 1-byte control messages -- 00 power off, 01 power
 * on, 02 reset (no answer), 04 get ATR (answered with the ATR) -- or a C-APDU
 * answered with the R-APDU. pcscd polls the card's presence with "get ATR"
 * every few hundred milliseconds, so that one must not reset anything: the
 * card is powered once per connection (to learn its ATR), then the ATR of the
 * last power on or reset is returned, also while the card is powered off. An empty answer means "no
 * card" (a mute, hardware destroyed card): vpcd then drops the connection and we reconnect later.
 *
 * The connection is non-blocking: partial reads are collected in rx, an
 * answer that cannot be written at once waits in tx (and no further request
 * is read until it is out).
 */
#define OT_LOG_COMPONENT "se.vpcd"
#include "se/transport.h"

#include "core/buf.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define VPCD_HDR      2u
#define VPCD_MSG_MAX  0xFFFFu
#define VPCD_HOST_MAX 256u

enum vpcd_state {
    VPCD_IDLE = 0,   /* not connected; next attempt at retry_at */
    VPCD_CONNECTING, /* non-blocking connect in progress */
    VPCD_UP,
};

struct vpcd {
    const struct se_tp_card_ops *ops;
    void *card;
    char host[VPCD_HOST_MAX];
    uint16_t port;
    enum vpcd_state state;
    int fd;
    int64_t retry_at; /* monotonic ms */
    int backoff_ms;
    bool warned;    /* the "not reachable" warning was logged */
    bool powered;   /* the card was powered on through this endpoint */
    bool atr_known; /* atr/atr_len hold the answer of the last power on */
    uint8_t atr[SE_TP_MAX_ATR];
    size_t atr_len; /* 0: no ATR (mute card) */
    size_t rx_len;
    uint8_t rx[VPCD_HDR + VPCD_MSG_MAX];
    size_t tx_len, tx_off;
    uint8_t tx[VPCD_HDR + SE_TP_MAX_RESP];
};

static int64_t vpcd_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ot_err se_vpcd_frame_parse(const uint8_t *p, size_t n, const uint8_t **msg, size_t *msg_len,
                           size_t *used)
{
    size_t len;

    if (p == NULL && n > 0) {
        return OT_E_ARG;
    }
    if (n < VPCD_HDR) {
        return OT_E_TRUNCATED;
    }
    len = ot_get_u16be(p);
    if (len > n - VPCD_HDR) {
        return OT_E_TRUNCATED;
    }
    *msg = p + VPCD_HDR;
    *msg_len = len;
    *used = VPCD_HDR + len;
    return OT_OK;
}

static void vpcd_quickack(const struct vpcd *v)
{
#ifdef TCP_QUICKACK
    int one = 1;

    (void)setsockopt(v->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
#else
    (void)v;
#endif
}

static void vpcd_disconnect(struct vpcd *v, const char *why)
{
    if (v->fd >= 0) {
        close(v->fd);
        v->fd = -1;
    }
    if (v->state == VPCD_UP) {
        OT_LOG_INFO("event=disconnected vpcd=%s:%u reason=\"%s\"", v->host, (unsigned)v->port, why);
    }
    v->state = VPCD_IDLE;
    v->atr_known = false; /* a new connection learns it again */
    v->rx_len = 0;
    v->tx_len = 0;
    v->tx_off = 0;
    v->retry_at = vpcd_now_ms() + v->backoff_ms;
    v->backoff_ms *= 2;
    if (v->backoff_ms > SE_VPCD_BACKOFF_MAX_MS) {
        v->backoff_ms = SE_VPCD_BACKOFF_MAX_MS;
    }
}

static void vpcd_unreachable(struct vpcd *v, const char *why)
{
    if (!v->warned) {
        OT_LOG_WARN("event=unreachable vpcd=%s:%u reason=\"%s\" retrying=yes", v->host,
                    (unsigned)v->port, why);
        v->warned = true;
    } else {
        OT_LOG_DEBUG("event=unreachable vpcd=%s:%u reason=\"%s\"", v->host, (unsigned)v->port, why);
    }
    vpcd_disconnect(v, why);
}

static void vpcd_connected(struct vpcd *v)
{
    int one = 1;

    /* One request, one answer: never let Nagle hold an answer back. */
    (void)setsockopt(v->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    vpcd_quickack(v);
    v->state = VPCD_UP;
    v->warned = false;
    OT_LOG_INFO("event=connected vpcd=%s:%u", v->host, (unsigned)v->port);
}

static void vpcd_try_connect(struct vpcd *v)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    char serv[8];
    int rc;
    int fd = -1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    (void)snprintf(serv, sizeof serv, "%u", (unsigned)v->port);
    rc = getaddrinfo(v->host, serv, &hints, &res);
    if (rc != 0 || res == NULL) {
        vpcd_unreachable(v, rc != 0 ? gai_strerror(rc) : "no address");
        goto out;
    }
    fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd < 0) {
        vpcd_unreachable(v, strerror(errno));
        goto out;
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0
        || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        vpcd_unreachable(v, strerror(errno));
        close(fd);
        goto out;
    }
    v->fd = fd;
    if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
        vpcd_connected(v);
    } else if (errno == EINPROGRESS) {
        v->state = VPCD_CONNECTING;
    } else {
        vpcd_unreachable(v, strerror(errno));
    }
out:
    freeaddrinfo(res);
}

/* Queues one message (2-byte length + payload) and tries to send it. */
static void vpcd_send(struct vpcd *v, const uint8_t *p, size_t n)
{
    ssize_t w;

    ot_put_u16be(v->tx, (uint16_t)n);
    if (n > 0) {
        memcpy(v->tx + VPCD_HDR, p, n);
    }
    v->tx_len = VPCD_HDR + n;
    v->tx_off = 0;
    w = send(v->fd, v->tx, v->tx_len, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            vpcd_disconnect(v, strerror(errno));
        }
        return;
    }
    v->tx_off = (size_t)w;
    if (v->tx_off == v->tx_len) {
        v->tx_len = 0;
        v->tx_off = 0;
    }
}

static void vpcd_power_on(struct vpcd *v)
{
    size_t len = sizeof v->atr;

    if (v->ops->power_on(v->card, v->atr, &len) == OT_OK) {
        v->atr_len = len;
        v->powered = true;
        v->atr_known = true;
    } else {
        v->atr_len = 0; /* mute: no ATR */
        v->powered = false;
        v->atr_known = true;
    }
}

/* Handles one message from vpcd. */
static void vpcd_handle(struct vpcd *v, const uint8_t *m, size_t n)
{
    uint8_t resp[SE_TP_MAX_RESP];
    size_t rlen = sizeof resp;
    ot_err err;

    if (n == 1) {
        switch (m[0]) {
        case SE_VPCD_CTRL_OFF:
            OT_LOG_DEBUG("power off");
            v->ops->power_off(v->card);
            v->powered = false;
            return;
        case SE_VPCD_CTRL_ON:
        case SE_VPCD_CTRL_RESET:
            OT_LOG_DEBUG("%s", m[0] == SE_VPCD_CTRL_ON ? "power on" : "reset");
            vpcd_power_on(v);
            return;
        case SE_VPCD_CTRL_ATR:
            /* Presence poll: never a reset; only the first one of a
             * connection powers the card, to learn its ATR. */
            if (!v->atr_known) {
                vpcd_power_on(v);
            }
            vpcd_send(v, v->atr, v->atr_len);
            return;
        default:
            OT_LOG_WARN("event=ignored vpcd=%s:%u control=%02X", v->host, (unsigned)v->port, m[0]);
            return;
        }
    }
    if (n == 0) {
        OT_LOG_DEBUG("empty vpcd message ignored");
        return;
    }
    if (!v->powered) {
        /* vpcd always powers the card first; be lenient with other peers. */
        vpcd_power_on(v);
    }
    OT_LOG_HEX(OT_LOG_LVL_TRACE, "C-APDU", m, n);
    err = se_tp_card_exchange(v->ops, v->card, m, n, resp, &rlen);
    if (err != OT_OK) {
        /* Mute or unpowered card: an empty answer is what vpcd reads as "no card". */
        OT_LOG_DEBUG("no answer: %s", ot_strerror(err));
        rlen = 0;
    }
    OT_LOG_HEX(OT_LOG_LVL_TRACE, "R-APDU", resp, rlen);
    vpcd_send(v, resp, rlen);
}

/* Handles the complete messages in rx, one at a time: a message queued
 * behind an answer that did not go out yet waits until it has. */
static void vpcd_drain(struct vpcd *v)
{
    size_t off = 0;
    const uint8_t *m;
    size_t mlen, used;

    while (v->state == VPCD_UP && v->tx_len == 0
           && se_vpcd_frame_parse(v->rx + off, v->rx_len - off, &m, &mlen, &used) == OT_OK) {
        vpcd_handle(v, m, mlen);
        off += used;
    }
    if (v->state != VPCD_UP) {
        return;
    }
    if (off > 0) {
        memmove(v->rx, v->rx + off, v->rx_len - off);
        v->rx_len -= off;
    }
}

static void vpcd_read(struct vpcd *v)
{
    ssize_t r;

    r = recv(v->fd, v->rx + v->rx_len, sizeof v->rx - v->rx_len, 0);
    if (r == 0) {
        vpcd_disconnect(v, "closed by vpcd");
        return;
    }
    if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            vpcd_disconnect(v, strerror(errno));
        }
        return;
    }
    vpcd_quickack(v);
    v->rx_len += (size_t)r;
    v->backoff_ms = SE_VPCD_BACKOFF_MIN_MS; /* a working link: start over */
    vpcd_drain(v);
}

static void vpcd_flush(struct vpcd *v)
{
    ssize_t w = send(v->fd, v->tx + v->tx_off, v->tx_len - v->tx_off, MSG_NOSIGNAL);

    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            vpcd_disconnect(v, strerror(errno));
        }
        return;
    }
    v->tx_off += (size_t)w;
    if (v->tx_off < v->tx_len) {
        return;
    }
    v->tx_len = 0;
    v->tx_off = 0;
    vpcd_drain(v); /* requests that arrived while the answer was waiting */
}

static size_t vpcd_pollfds(void *impl, struct pollfd *pfd, size_t max, int *timeout_ms)
{
    struct vpcd *v = impl;
    int64_t wait;

    if (v->state == VPCD_IDLE) {
        wait = v->retry_at - vpcd_now_ms();
        if (wait < 0) {
            wait = 0;
        }
        if (*timeout_ms < 0 || wait < *timeout_ms) {
            *timeout_ms = (int)wait;
        }
        return 0;
    }
    if (max < 1) {
        return 0;
    }
    pfd[0].fd = v->fd;
    pfd[0].revents = 0;
    if (v->state == VPCD_CONNECTING || v->tx_len > 0) {
        pfd[0].events = POLLOUT;
    } else {
        pfd[0].events = POLLIN;
    }
    return 1;
}

static void vpcd_dispatch(void *impl, const struct pollfd *pfd, size_t n)
{
    struct vpcd *v = impl;
    int soerr = 0;
    socklen_t sl = sizeof soerr;

    if (v->state == VPCD_IDLE) {
        if (vpcd_now_ms() >= v->retry_at) {
            vpcd_try_connect(v);
        }
        return;
    }
    if (n < 1 || pfd[0].revents == 0) {
        return;
    }
    if (v->state == VPCD_CONNECTING) {
        if (getsockopt(v->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) {
            soerr = errno;
        }
        if (soerr != 0) {
            vpcd_unreachable(v, strerror(soerr));
        } else {
            vpcd_connected(v);
        }
        return;
    }
    if (v->tx_len > 0) {
        if ((pfd[0].revents & (POLLERR | POLLHUP)) != 0 && (pfd[0].revents & POLLOUT) == 0) {
            vpcd_disconnect(v, "connection lost");
            return;
        }
        vpcd_flush(v);
        return;
    }
    vpcd_read(v);
}

static void vpcd_free(void *impl)
{
    struct vpcd *v = impl;

    if (v == NULL) {
        return;
    }
    if (v->fd >= 0) {
        close(v->fd);
    }
    free(v);
}

static const struct se_tp_ep_ops vpcd_ops = {
    .name = "vpcd",
    .pollfds = vpcd_pollfds,
    .dispatch = vpcd_dispatch,
    .free = vpcd_free,
};

ot_err se_vpcd_new(const struct se_tp_card_ops *ops, void *card, const char *host, uint16_t port,
                   struct se_tp_ep **out)
{
    struct vpcd *v = NULL;
    struct se_tp_ep *ep = NULL;
    size_t hl;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (ops == NULL || host == NULL || port == 0) {
        return OT_E_ARG;
    }
    hl = strlen(host);
    if (hl == 0 || hl >= VPCD_HOST_MAX) {
        return OT_E_ARG;
    }
    v = calloc(1, sizeof *v);
    ep = calloc(1, sizeof *ep);
    if (v == NULL || ep == NULL) {
        free(v);
        free(ep);
        return OT_E_NOMEM;
    }
    v->ops = ops;
    v->card = card;
    memcpy(v->host, host, hl + 1);
    v->port = port;
    v->fd = -1;
    v->state = VPCD_IDLE;
    v->retry_at = 0;
    v->backoff_ms = SE_VPCD_BACKOFF_MIN_MS;
    ep->ops = &vpcd_ops;
    ep->impl = v;
    *out = ep;
    return OT_OK;
}

bool se_vpcd_connected(const struct se_tp_ep *ep)
{
    const struct vpcd *v;

    if (ep == NULL || ep->ops != &vpcd_ops) {
        return false;
    }
    v = ep->impl;
    return v->state == VPCD_UP;
}
