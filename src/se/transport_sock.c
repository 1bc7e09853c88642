/* vse transport over a unix or TCP socket: OpenTSM's length-prefixed frame
 * protocol (docs/vse.md, "Transports").
 *
 * Frame: u32be L, then L bytes: u8 type and L - 1 bytes of payload. L is
 * 1..VSE_SOCK_FRAME_MAX, so the largest frame carries an extended C-APDU with
 * 65535 data bytes. Every request gets exactly one answer frame, in order:
 * the request type | 0x80 on success, VSE_SOCK_ERROR (u16be ot_err code + a
 * short ASCII reason) otherwise. A frame whose L is 0 or over the cap cannot
 * be skipped safely: it is answered with an error frame and the connection
 * is closed after it. Up to SE_SOCK_MAX_CLIENTS connections share the card;
 * each frame is handled as a whole, in arrival order per connection. A
 * connection on which nothing moved for the idle time (SE_SOCK_IDLE_MS by
 * default) is closed. There is no authentication: a TCP address that is
 * not loopback is logged as a loud warning.
 */
#define OT_LOG_COMPONENT "se.sock"
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
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SOCK_LEN_BYTES 4u
#define SOCK_RX_CAP    (SOCK_LEN_BYTES + VSE_SOCK_FRAME_MAX)
#define SOCK_TX_CAP    (VSE_SOCK_HDR + SE_TP_MAX_RESP)
#define SOCK_PATH_MAX  108u /* sizeof sun_path on Linux */

struct sock_client {
    int fd;
    int64_t last_ms; /* monotonic ms of the last byte moved either way */
    bool closing;    /* close once tx is out (after a fatal error frame) */
    size_t rx_len;
    uint8_t *rx; /* SOCK_RX_CAP */
    size_t tx_len, tx_off;
    uint8_t *tx; /* SOCK_TX_CAP */
};

struct sock_ep {
    const struct se_tp_card_ops *ops;
    void *card;
    int lfd;
    bool is_unix;
    char path[SOCK_PATH_MAX];
    uint16_t port;
    bool exposed;     /* TCP on a non-loopback address */
    unsigned idle_ms; /* 0: clients never time out */
    struct sock_client cl[SE_SOCK_MAX_CLIENTS];
};

static int64_t sock_now_ms(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- frames */

/* An error frame: u16be code, then the text (cut at VSE_SOCK_ERR_TEXT_MAX). */
static ot_err sock_error_frame(ot_err code, const char *text, uint8_t *out, size_t *out_len)
{
    uint8_t pl[2u + VSE_SOCK_ERR_TEXT_MAX];
    size_t tl = strlen(text);

    if (tl > VSE_SOCK_ERR_TEXT_MAX) {
        tl = VSE_SOCK_ERR_TEXT_MAX;
    }
    ot_put_u16be(pl, (uint16_t)code);
    memcpy(pl + 2, text, tl);
    return vse_sock_frame_encode(VSE_SOCK_ERROR, pl, 2u + tl, out, out_len);
}

ot_err se_sock_process(const struct se_tp_card_ops *ops, void *card, const struct vse_sock_frame *f,
                       uint8_t *out, size_t *out_len)
{
    uint8_t atr[SE_TP_MAX_ATR];
    size_t alen = sizeof atr;
    size_t rlen;
    char text[64];
    ot_err err;

    if (ops == NULL || f == NULL || out == NULL || out_len == NULL) {
        return OT_E_ARG;
    }
    if (*out_len < VSE_SOCK_HDR + SE_TP_MAX_RESP) {
        *out_len = VSE_SOCK_HDR + SE_TP_MAX_RESP;
        return OT_E_BUF_SMALL;
    }
    switch (f->type) {
    case VSE_SOCK_APDU:
        rlen = *out_len - VSE_SOCK_HDR;
        OT_LOG_HEX(OT_LOG_LVL_TRACE, "C-APDU", f->payload, f->len);
        err = se_tp_card_exchange(ops, card, f->payload, f->len, out + VSE_SOCK_HDR, &rlen);
        if (err == OT_E_NO_CARD) {
            return sock_error_frame(err, "no card: not powered on, or mute", out, out_len);
        }
        if (err != OT_OK) {
            return sock_error_frame(err, ot_strerror(err), out, out_len);
        }
        OT_LOG_HEX(OT_LOG_LVL_TRACE, "R-APDU", out + VSE_SOCK_HDR, rlen);
        ot_put_u32be(out, (uint32_t)(rlen + 1u));
        out[SOCK_LEN_BYTES] = VSE_SOCK_APDU | VSE_SOCK_REPLY;
        *out_len = VSE_SOCK_HDR + rlen;
        return OT_OK;
    case VSE_SOCK_POWER_ON:
    case VSE_SOCK_RESET:
    case VSE_SOCK_POWER_OFF:
        if (f->len != 0) {
            (void)snprintf(text, sizeof text, "frame type %02X takes no payload (got %zu bytes)",
                           f->type, f->len);
            return sock_error_frame(OT_E_PROTOCOL, text, out, out_len);
        }
        if (f->type == VSE_SOCK_POWER_OFF) {
            ops->power_off(card);
            return vse_sock_frame_encode(VSE_SOCK_POWER_OFF | VSE_SOCK_REPLY, NULL, 0, out,
                                         out_len);
        }
        err = ops->power_on(card, atr, &alen);
        if (err == OT_E_NO_CARD) {
            return sock_error_frame(err, "no card: the card is mute", out, out_len);
        }
        if (err != OT_OK) {
            return sock_error_frame(err, ot_strerror(err), out, out_len);
        }
        return vse_sock_frame_encode((uint8_t)(f->type | VSE_SOCK_REPLY), atr, alen, out, out_len);
    default:
        (void)snprintf(text, sizeof text, "unknown frame type %02X", f->type);
        return sock_error_frame(OT_E_UNSUPPORTED, text, out, out_len);
    }
}

/* ---------------------------------------------------------------- connections */

static void sock_client_close(struct sock_client *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    free(c->rx);
    free(c->tx);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

static void sock_client_send(struct sock_client *c)
{
    ssize_t w;

    while (c->tx_off < c->tx_len) {
        w = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                OT_LOG_DEBUG("client send: %s", strerror(errno));
                sock_client_close(c);
            }
            return;
        }
        c->tx_off += (size_t)w;
        c->last_ms = sock_now_ms();
    }
    c->tx_len = 0;
    c->tx_off = 0;
    if (c->closing) {
        sock_client_close(c);
    }
}

/* Answers the complete frames in rx while nothing waits to be sent. */
static void sock_client_drain(struct sock_ep *s, struct sock_client *c)
{
    struct vse_sock_frame f;
    size_t off = 0;
    size_t used = 0;
    size_t olen;
    ot_err err;

    while (c->fd >= 0 && !c->closing && c->tx_len == 0) {
        err = vse_sock_frame_parse(c->rx + off, c->rx_len - off, &f, &used);
        if (err == OT_E_TRUNCATED) {
            break;
        }
        olen = SOCK_TX_CAP;
        if (err != OT_OK) {
            OT_LOG_WARN("event=bad_frame reason=\"%s\" action=close", ot_strerror(err));
            (void)sock_error_frame(
                err, err == OT_E_TOO_LONG ? "frame length over the cap" : "frame length 0", c->tx,
                &olen);
            c->closing = true;
        } else {
            err = se_sock_process(s->ops, s->card, &f, c->tx, &olen);
            OT_ASSERT(err == OT_OK);
            off += used;
        }
        c->tx_len = olen;
        c->tx_off = 0;
        sock_client_send(c);
    }
    if (c->fd >= 0 && off > 0) {
        memmove(c->rx, c->rx + off, c->rx_len - off);
        c->rx_len -= off;
    }
}

static void sock_client_read(struct sock_ep *s, struct sock_client *c)
{
    ssize_t r = recv(c->fd, c->rx + c->rx_len, SOCK_RX_CAP - c->rx_len, 0);

    if (r == 0) {
        OT_LOG_DEBUG("client closed the connection");
        sock_client_close(c);
        return;
    }
    if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            OT_LOG_DEBUG("client recv: %s", strerror(errno));
            sock_client_close(c);
        }
        return;
    }
    c->rx_len += (size_t)r;
    c->last_ms = sock_now_ms();
    sock_client_drain(s, c);
}

static void sock_accept(struct sock_ep *s)
{
    struct sock_client *c = NULL;
    uint8_t busy[VSE_SOCK_HDR + 2u + VSE_SOCK_ERR_TEXT_MAX];
    size_t blen = sizeof busy;
    int one = 1;
    size_t i;
    int fd = accept(s->lfd, NULL, NULL);

    if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            OT_LOG_WARN("accept: %s", strerror(errno));
        }
        return;
    }
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    for (i = 0; i < SE_SOCK_MAX_CLIENTS; i++) {
        if (s->cl[i].fd < 0) {
            c = &s->cl[i];
            break;
        }
    }
    if (c == NULL) {
        OT_LOG_WARN("event=refused reason=too_many_clients max=%u", (unsigned)SE_SOCK_MAX_CLIENTS);
        if (sock_error_frame(OT_E_LIMIT, "too many clients", busy, &blen) == OT_OK) {
            (void)send(fd, busy, blen, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        close(fd);
        return;
    }
    c->rx = malloc(SOCK_RX_CAP);
    c->tx = malloc(SOCK_TX_CAP);
    if (c->rx == NULL || c->tx == NULL
        || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        OT_LOG_ERROR("cannot take a client: %s",
                     c->rx == NULL || c->tx == NULL ? "out of memory" : strerror(errno));
        c->fd = fd;
        sock_client_close(c);
        return;
    }
    if (!s->is_unix) {
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    c->fd = fd;
    c->rx_len = 0;
    c->tx_len = 0;
    c->tx_off = 0;
    c->closing = false;
    c->last_ms = sock_now_ms();
    OT_LOG_DEBUG("client connected");
}

static size_t sock_pollfds(void *impl, struct pollfd *pfd, size_t max, int *timeout_ms)
{
    struct sock_ep *s = impl;
    size_t n = 0;
    size_t i;

    if (max < 1 + SE_SOCK_MAX_CLIENTS) {
        return 0;
    }
    if (s->idle_ms > 0) {
        /* wake up when the next client's idle time runs out */
        int64_t now = sock_now_ms();

        for (i = 0; i < SE_SOCK_MAX_CLIENTS; i++) {
            int64_t left;

            if (s->cl[i].fd < 0) {
                continue;
            }
            left = s->cl[i].last_ms + (int64_t)s->idle_ms - now;
            left = left < 0 ? 0 : left;
            if (*timeout_ms < 0 || left < *timeout_ms) {
                *timeout_ms = (int)left;
            }
        }
    }
    pfd[n].fd = s->lfd;
    pfd[n].events = POLLIN;
    pfd[n].revents = 0;
    n++;
    /* Fixed slots (fd -1 is ignored by poll) keep the order dispatch expects. */
    for (i = 0; i < SE_SOCK_MAX_CLIENTS; i++) {
        pfd[n].fd = s->cl[i].fd;
        pfd[n].events = s->cl[i].tx_len > 0 ? POLLOUT : POLLIN;
        pfd[n].revents = 0;
        n++;
    }
    return n;
}

static void sock_dispatch(void *impl, const struct pollfd *pfd, size_t n)
{
    struct sock_ep *s = impl;
    struct sock_client *c;
    size_t i;

    if (n != 1 + SE_SOCK_MAX_CLIENTS) {
        return;
    }
    for (i = 0; i < SE_SOCK_MAX_CLIENTS; i++) {
        c = &s->cl[i];
        if (c->fd < 0 || pfd[1 + i].fd != c->fd || pfd[1 + i].revents == 0) {
            continue;
        }
        if (c->tx_len > 0) {
            if ((pfd[1 + i].revents & POLLOUT) != 0) {
                sock_client_send(c);
                if (c->fd >= 0) {
                    sock_client_drain(s, c);
                }
            } else {
                sock_client_close(c);
            }
        } else {
            sock_client_read(s, c);
        }
    }
    /* Idle clients (nothing moved either way for idle_ms) are dropped, so
     * idle connections cannot hold every slot. */
    if (s->idle_ms > 0) {
        int64_t now = sock_now_ms();

        for (i = 0; i < SE_SOCK_MAX_CLIENTS; i++) {
            c = &s->cl[i];
            if (c->fd >= 0 && now - c->last_ms >= (int64_t)s->idle_ms) {
                OT_LOG_INFO("event=idle_close idle_ms=%u", s->idle_ms);
                sock_client_close(c);
            }
        }
    }
    if ((pfd[0].revents & POLLIN) != 0) {
        sock_accept(s);
    }
}

static void sock_free(void *impl)
{
    struct sock_ep *s = impl;
    size_t i;

    if (s == NULL) {
        return;
    }
    for (i = 0; i < SE_SOCK_MAX_CLIENTS; i++) {
        sock_client_close(&s->cl[i]);
    }
    if (s->lfd >= 0) {
        close(s->lfd);
        if (s->is_unix) {
            (void)unlink(s->path);
        }
    }
    free(s);
}

static const struct se_tp_ep_ops sock_ops = {
    .name = "socket",
    .pollfds = sock_pollfds,
    .dispatch = sock_dispatch,
    .free = sock_free,
};

/* ---------------------------------------------------------------- listening */

static ot_err sock_listen_unix(struct sock_ep *s, const char *path)
{
    struct sockaddr_un sa;
    struct stat st;
    size_t pl = strlen(path);
    int fd = -1;
    ot_err err = OT_OK;

    if (pl == 0 || pl >= sizeof sa.sun_path || pl >= sizeof s->path) {
        OT_LOG_ERROR("unix socket path empty or longer than %zu bytes: %s", sizeof sa.sun_path - 1,
                     path);
        return OT_E_FORMAT;
    }
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, pl + 1);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            OT_LOG_ERROR("%s exists and is not a socket", path);
            return OT_E_CONFLICT;
        }
        /* A socket file from a process that died: reuse it if nobody answers. */
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0) {
            OT_LOG_ERROR("socket: %s", strerror(errno));
            return OT_E_IO;
        }
        if (connect(fd, (const struct sockaddr *)&sa, sizeof sa) == 0) {
            close(fd);
            OT_LOG_ERROR("%s is in use by another server", path);
            return OT_E_CONFLICT;
        }
        close(fd);
        fd = -1;
        (void)unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) {
        OT_LOG_ERROR("socket: %s", strerror(errno));
        return OT_E_IO;
    }
    if (bind(fd, (const struct sockaddr *)&sa, sizeof sa) != 0) {
        OT_LOG_ERROR("bind %s: %s", path, strerror(errno));
        OT_FAIL(OT_E_IO);
    }
    memcpy(s->path, path, pl + 1);
    s->is_unix = true;
    s->lfd = fd;
    fd = -1;
out:
    if (fd >= 0) {
        close(fd);
    }
    return err;
}

static ot_err sock_listen_tcp(struct sock_ep *s, const char *hostport)
{
    char host[256];
    char serv[8];
    uint16_t port;
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int one = 1;
    int fd = -1;
    int rc;
    ot_err err = OT_OK;

    err = se_tp_parse_hostport(hostport, host, sizeof host, &port);
    if (err != OT_OK) {
        OT_LOG_ERROR("bad tcp address '%s': want HOST:PORT", hostport);
        return err;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    (void)snprintf(serv, sizeof serv, "%u", (unsigned)port);
    rc = getaddrinfo(host, serv, &hints, &res);
    if (rc != 0 || res == NULL) {
        OT_LOG_ERROR("tcp address %s: %s", hostport, rc != 0 ? gai_strerror(rc) : "no address");
        OT_FAIL(OT_E_FORMAT);
    }
    fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd < 0) {
        OT_LOG_ERROR("socket: %s", strerror(errno));
        OT_FAIL(OT_E_IO);
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        OT_LOG_ERROR("bind %s: %s", hostport, strerror(errno));
        OT_FAIL(OT_E_IO);
    }
    s->exposed = true; /* unless the bound address says loopback */
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;

            s->port = ntohs(a->sin_port);
            s->exposed = (ntohl(a->sin_addr.s_addr) >> 24) != 127u;
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            const uint8_t *b = a->sin6_addr.s6_addr;

            s->port = ntohs(a->sin6_port);
            s->exposed = !(IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)
                           || (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && b[12] == 127u));
        }
    }
    if (s->exposed) {
        OT_LOG_WARN("event=exposed addr=%s: the APDU port is NOT on loopback and has NO"
                    " authentication: anyone who can reach it can send any command to the card"
                    " (its keys included); bind 127.0.0.1 or a unix socket unless that is meant",
                    hostport);
    }
    s->lfd = fd;
    fd = -1;
out:
    if (fd >= 0) {
        close(fd);
    }
    freeaddrinfo(res);
    return err;
}

ot_err se_sock_new(const struct se_tp_card_ops *ops, void *card, const char *addr,
                   struct se_tp_ep **out)
{
    struct sock_ep *s = NULL;
    struct se_tp_ep *ep = NULL;
    size_t i;
    ot_err err = OT_OK;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (ops == NULL || addr == NULL) {
        return OT_E_ARG;
    }
    s = calloc(1, sizeof *s);
    ep = calloc(1, sizeof *ep);
    if (s == NULL || ep == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    s->ops = ops;
    s->card = card;
    s->lfd = -1;
    s->idle_ms = SE_SOCK_IDLE_MS;
    for (i = 0; i < SE_SOCK_MAX_CLIENTS; i++) {
        s->cl[i].fd = -1;
    }
    if (strncmp(addr, "unix:", 5) == 0) {
        OT_TRY(sock_listen_unix(s, addr + 5));
    } else if (strncmp(addr, "tcp:", 4) == 0) {
        OT_TRY(sock_listen_tcp(s, addr + 4));
    } else {
        OT_LOG_ERROR("bad listen address '%s': want unix:PATH or tcp:HOST:PORT", addr);
        OT_FAIL(OT_E_FORMAT);
    }
    if (fcntl(s->lfd, F_SETFL, fcntl(s->lfd, F_GETFL) | O_NONBLOCK) != 0
        || fcntl(s->lfd, F_SETFD, FD_CLOEXEC) != 0 || listen(s->lfd, 16) != 0) {
        OT_LOG_ERROR("listen %s: %s", addr, strerror(errno));
        OT_FAIL(OT_E_IO);
    }
    OT_LOG_INFO("event=listening addr=%s port=%u", addr, (unsigned)(s->is_unix ? 0 : s->port));
    ep->ops = &sock_ops;
    ep->impl = s;
    *out = ep;
    s = NULL;
    ep = NULL;
out:
    sock_free(s);
    free(ep);
    return err;
}

bool se_sock_exposed(const struct se_tp_ep *ep)
{
    const struct sock_ep *s;

    if (ep == NULL || ep->ops != &sock_ops) {
        return false;
    }
    s = ep->impl;
    return s->exposed;
}

void se_sock_set_idle(struct se_tp_ep *ep, unsigned idle_ms)
{
    struct sock_ep *s;

    if (ep == NULL || ep->ops != &sock_ops) {
        return;
    }
    s = ep->impl;
    s->idle_ms = idle_ms;
}

uint16_t se_sock_port(const struct se_tp_ep *ep)
{
    const struct sock_ep *s;

    if (ep == NULL || ep->ops != &sock_ops) {
        return 0;
    }
    s = ep->impl;
    return s->is_unix ? 0 : s->port;
}
