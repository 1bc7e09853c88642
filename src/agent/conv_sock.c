/* Protocol converter back end: a vse on its socket (core/vseframe.h).
 *
 * connect opens the socket and sends POWER_ON (the ATR comes back); each
 * APDU is one frame and its answer, bounded by the timeout. A timeout or a
 * broken stream closes the socket: the next connect starts over. */
#define OT_LOG_COMPONENT "agent.sock"
#include "agent/conv.h"

#include "core/log.h"
#include "core/vseframe.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SOCK_ADDR_MAX   200u
#define SOCK_RX_CAP     (VSE_SOCK_HDR + AGENT_RESP_MAX)
#define SOCK_PRESENT_MS 500 /* presence check: connect within this */

struct sock_be {
    char addr[SOCK_ADDR_MAX];
    int fd;
    uint8_t *rx;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* connect() bounded by timeout_ms (a card process that is stopped or
 * whose listen queue is full must not hang the agent). */
static int connect_to(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
    int fl = fcntl(fd, F_GETFL);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    struct pollfd p = {.fd = fd, .events = POLLOUT};

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        return -1;
    }
    if (connect(fd, sa, len) != 0) {
        if (errno != EINPROGRESS) {
            return -1; /* a unix socket with a full listen queue: EAGAIN */
        }
        if (poll(&p, 1, timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0
            || soerr != 0) {
            errno = soerr != 0 ? soerr : ETIMEDOUT;
            return -1;
        }
    }
    return fcntl(fd, F_SETFL, fl);
}

static int sock_open(const char *addr, int timeout_ms)
{
    int fd = -1;

    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un sa;
        size_t n = strlen(addr + 5);
        if (n == 0 || n >= sizeof sa.sun_path) {
            return -1;
        }
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        memcpy(sa.sun_path, addr + 5, n + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect_to(fd, (const struct sockaddr *)&sa, sizeof sa, timeout_ms) != 0) {
            close(fd);
            fd = -1;
        }
        return fd;
    }
    if (strncmp(addr, "tcp:", 4) == 0) {
        char host[SOCK_ADDR_MAX];
        const char *hp = addr + 4;
        const char *colon = strrchr(hp, ':');
        struct addrinfo hints;
        struct addrinfo *res = NULL;
        size_t hl;

        if (colon == NULL || colon == hp || colon[1] == '\0') {
            return -1;
        }
        hl = (size_t)(colon - hp);
        if (hp[0] == '[' && hl >= 2 && hp[hl - 1] == ']') {
            hp++;
            hl -= 2;
        }
        memcpy(host, hp, hl);
        host[hl] = '\0';
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || res == NULL) {
            return -1;
        }
        fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
        if (fd >= 0 && connect_to(fd, res->ai_addr, res->ai_addrlen, timeout_ms) != 0) {
            close(fd);
            fd = -1;
        }
        freeaddrinfo(res);
    }
    return fd;
}

static void sock_disconnect(void *impl)
{
    struct sock_be *b = impl;

    if (b->fd >= 0) {
        close(b->fd);
        b->fd = -1;
    }
}

/* Sends one frame and reads its answer into b->rx (*f points into it). */
static ot_err sock_roundtrip(struct sock_be *b, uint8_t type, const uint8_t *pl, size_t n,
                             int timeout_ms, struct vse_sock_frame *f)
{
    uint8_t *req = NULL;
    size_t rl = VSE_SOCK_HDR + n;
    size_t off = 0;
    size_t have = 0;
    size_t used;
    int64_t deadline = now_ms() + timeout_ms;
    ot_err err = OT_OK;

    req = malloc(rl);
    if (req == NULL) {
        return OT_E_NOMEM;
    }
    OT_TRY(vse_sock_frame_encode(type, pl, n, req, &rl));
    while (off < rl) {
        ssize_t w = send(b->fd, req + off, rl - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            OT_LOG_DEBUG("send %s: %s", b->addr, strerror(errno));
            OT_FAIL(OT_E_IO);
        }
        off += (size_t)w;
    }
    for (;;) {
        struct pollfd p = {.fd = b->fd, .events = POLLIN};
        int64_t left = deadline - now_ms();
        int rc;
        ssize_t r;

        err = vse_sock_frame_parse(b->rx, have, f, &used);
        if (err == OT_OK) {
            if (used != have) {
                OT_FAIL(OT_E_PROTOCOL); /* answers come one per request */
            }
            break;
        }
        if (err != OT_E_TRUNCATED) {
            OT_FAIL(OT_E_PROTOCOL);
        }
        err = OT_OK;
        if (left <= 0) {
            OT_LOG_WARN("event=apdu_timeout addr=%s timeout_ms=%d", b->addr, timeout_ms);
            OT_FAIL(OT_E_TIMEOUT);
        }
        rc = poll(&p, 1, (int)left);
        if (rc < 0 && errno == EINTR) {
            continue;
        }
        if (rc < 0) {
            OT_FAIL(OT_E_IO);
        }
        if (rc == 0) {
            continue;
        }
        r = recv(b->fd, b->rx + have, SOCK_RX_CAP - have, 0);
        if (r == 0) {
            OT_FAIL(OT_E_CLOSED);
        }
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            OT_FAIL(OT_E_IO);
        }
        have += (size_t)r;
    }
    if (f->type == VSE_SOCK_ERROR) {
        ot_err code;
        const char *text;
        size_t tl;
        if (vse_sock_error_parse(f, &code, &text, &tl) != OT_OK) {
            OT_FAIL(OT_E_PROTOCOL);
        }
        OT_LOG_DEBUG("addr=%s card error %s: %.*s", b->addr, ot_errname(code), (int)tl, text);
        /* No card (mute, powered off) is the card's state; the rest are ours. */
        err = code == OT_E_NO_CARD ? OT_E_NO_CARD : OT_E_PROTOCOL;
        goto out;
    }
    if (f->type != (type | VSE_SOCK_REPLY)) {
        OT_FAIL(OT_E_PROTOCOL);
    }
out:
    free(req);
    if (err != OT_OK && err != OT_E_NO_CARD) {
        sock_disconnect(b);
    }
    return err;
}

static ot_err sock_connect(void *impl, int timeout_ms, uint8_t *atr, size_t *atr_len)
{
    struct sock_be *b = impl;
    struct vse_sock_frame f;
    ot_err err;

    sock_disconnect(b);
    b->fd = sock_open(b->addr, timeout_ms);
    if (b->fd < 0) {
        OT_LOG_DEBUG("connect %s: %s", b->addr, strerror(errno));
        return OT_E_NO_CARD;
    }
    err = sock_roundtrip(b, VSE_SOCK_POWER_ON, NULL, 0, timeout_ms, &f);
    if (err != OT_OK) {
        sock_disconnect(b);
        return err;
    }
    if (f.len == 0 || f.len > *atr_len) {
        sock_disconnect(b);
        return OT_E_PROTOCOL;
    }
    memcpy(atr, f.payload, f.len);
    *atr_len = f.len;
    return OT_OK;
}

static ot_err sock_transmit(void *impl, const uint8_t *cmd, size_t n, uint8_t *resp,
                            size_t *resp_len, int timeout_ms)
{
    struct sock_be *b = impl;
    struct vse_sock_frame f;
    ot_err err;

    if (b->fd < 0) {
        return OT_E_NO_CARD;
    }
    err = sock_roundtrip(b, VSE_SOCK_APDU, cmd, n, timeout_ms, &f);
    if (err != OT_OK) {
        return err;
    }
    if (f.len < 2) {
        sock_disconnect(b);
        return OT_E_PROTOCOL;
    }
    if (f.len > *resp_len) {
        *resp_len = f.len;
        return OT_E_BUF_SMALL;
    }
    memcpy(resp, f.payload, f.len);
    *resp_len = f.len;
    return OT_OK;
}

static bool sock_present(void *impl)
{
    struct sock_be *b = impl;
    int fd;

    if (b->fd >= 0) {
        return true;
    }
    fd = sock_open(b->addr, SOCK_PRESENT_MS);
    if (fd < 0) {
        return false;
    }
    close(fd);
    return true;
}

static void sock_free(void *impl)
{
    struct sock_be *b = impl;

    if (b == NULL) {
        return;
    }
    sock_disconnect(b);
    free(b->rx);
    free(b);
}

static const struct agent_be_ops sock_ops = {
    .name = "socket",
    .connect = sock_connect,
    .transmit = sock_transmit,
    .disconnect = sock_disconnect,
    .present = sock_present,
    .free = sock_free,
};

ot_err agent_be_socket_new(const char *addr, const struct agent_be_ops **ops, void **impl)
{
    struct sock_be *b;
    size_t n;

    if (addr == NULL || ops == NULL || impl == NULL) {
        return OT_E_ARG;
    }
    n = strlen(addr);
    if (n >= SOCK_ADDR_MAX
        || !((strncmp(addr, "unix:", 5) == 0 && n > 5)
             || (strncmp(addr, "tcp:", 4) == 0 && strrchr(addr + 4, ':') != NULL))) {
        return OT_E_FORMAT;
    }
    b = calloc(1, sizeof *b);
    if (b == NULL) {
        return OT_E_NOMEM;
    }
    b->rx = malloc(SOCK_RX_CAP);
    if (b->rx == NULL) {
        free(b);
        return OT_E_NOMEM;
    }
    memcpy(b->addr, addr, n + 1);
    b->fd = -1;
    *ops = &sock_ops;
    *impl = b;
    return OT_OK;
}
