/* fleetsim's event-driven HTTP/1.1 client (fleet_priv.h). Plain HTTP over
 * loopback to tsmd: answers carry Content-Length (none for 204), a stream
 * answer is text/event-stream without length until the server closes
 * (net/http.c). Anything else is a protocol error for this client. */
#define OT_LOG_COMPONENT "fleet.http"
#include "core/log.h"
#include "fleet/fleet_priv.h"
#include "fleet/http_head.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#    define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define FH_READ_CHUNK 16384u
#define FH_EVENTS     256

ot_err fh_loop_init(struct fh_loop *l, const char *host, uint16_t port, const char *ca_file)
{
    struct in_addr a;

    memset(l, 0, sizeof *l);
    l->ep = -1;
    if (host == NULL || inet_pton(AF_INET, host, &a) != 1 || port == 0) {
        return OT_E_ARG;
    }
    l->dst_addr = a.s_addr;
    l->dst_port = htons(port);
    (void)snprintf(l->host, sizeof l->host, "%s:%u", host, (unsigned)port);
    if (ca_file != NULL) {
        l->tls = SSL_CTX_new(TLS_client_method());
        if (l->tls == NULL || SSL_CTX_load_verify_locations(l->tls, ca_file, NULL) != 1
            || SSL_CTX_set_min_proto_version(l->tls, TLS1_2_VERSION) != 1) {
            OT_LOG_WARN("TLS: cannot use CA file %s", ca_file);
            fh_loop_close(l);
            return OT_E_ARG;
        }
        SSL_CTX_set_verify(l->tls, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_options(l->tls, SSL_OP_IGNORE_UNEXPECTED_EOF);
        /* An idle stream keeps no read/write buffers. */
        SSL_CTX_set_mode(l->tls, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE
                                     | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        (void)snprintf(l->tls_ip, sizeof l->tls_ip, "%s", host);
    }
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    return l->ep < 0 ? OT_E_IO : OT_OK;
}

void fh_loop_close(struct fh_loop *l)
{
    if (l->ep >= 0) {
        close(l->ep);
    }
    l->ep = -1;
    SSL_CTX_free(l->tls);
    l->tls = NULL;
}

void fh_conn_init(struct fh_conn *c, struct fh_loop *l, uint32_t src_host_order)
{
    memset(c, 0, sizeof *c);
    c->loop = l;
    c->fd = -1;
    c->src = htonl(src_host_order);
    ot_buf_init(&c->out, FH_BODY_MAX + FH_HEAD_MAX);
    ot_buf_init(&c->in, FH_BODY_MAX + FH_HEAD_MAX);
}

void fh_close(struct fh_conn *c)
{
    if (c->ssl != NULL) {
        SSL_free(c->ssl); /* no close_notify: the peer sees the TCP close */
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        (void)epoll_ctl(c->loop->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
        c->loop->open--;
    }
    c->connecting = false;
    c->handshaking = false;
    c->busy = false;
    c->streaming = false;
    c->must_close = false;
    ot_buf_free(&c->out);
    ot_buf_free(&c->in);
    ot_buf_init(&c->out, FH_BODY_MAX + FH_HEAD_MAX);
    ot_buf_init(&c->in, FH_BODY_MAX + FH_HEAD_MAX);
    c->out_off = 0;
    c->hdr_end = 0;
}

static void fh_watch(struct fh_conn *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0u), .data.ptr = c};
    (void)epoll_ctl(c->loop->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static ot_err fh_connect(struct fh_conn *c)
{
    struct sockaddr_in dst = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0) {
        OT_LOG_WARN("socket: %s", strerror(errno));
        return OT_E_IO;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->src != 0) {
        struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = c->src};
        (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0) {
            OT_LOG_WARN("bind: %s", strerror(errno));
            close(fd);
            return OT_E_IO;
        }
    }
    dst.sin_addr.s_addr = c->loop->dst_addr;
    dst.sin_port = c->loop->dst_port;
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0 && errno != EINPROGRESS) {
        OT_LOG_WARN("connect: %s", strerror(errno));
        close(fd);
        return OT_E_IO;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(c->loop->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        return OT_E_IO;
    }
    c->fd = fd;
    c->connecting = true;
    c->loop->open++;
    return OT_OK;
}

/* Ends the request in flight with err (the connection is closed: its state
 * is unknown). */
static void fh_fail(struct fh_conn *c, ot_err err)
{
    fh_done_fn done = c->done;
    void *ctx = c->ctx;
    bool was_busy = c->busy || c->streaming;
    fh_close(c);
    if (was_busy && done != NULL) {
        done(ctx, c, err);
    }
}

/* TLS I/O with the socket's conventions: -1 and errno EAGAIN when it
 * would block (*want_out: it waits for the socket to be writable), 0 at
 * the end of the stream, -1 and EIO on an error. */
static ssize_t fh_tls_result(struct fh_conn *c, int r, bool *want_out)
{
    int e = SSL_get_error(c->ssl, r);
    *want_out = e == SSL_ERROR_WANT_WRITE;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        return 0;
    }
    OT_LOG_DEBUG("TLS: error %d", e);
    ERR_clear_error();
    errno = EIO;
    return -1;
}

static ssize_t fh_write(struct fh_conn *c, const void *p, size_t n, bool *want_out)
{
    *want_out = true;
    if (c->ssl == NULL) {
        return send(c->fd, p, n, MSG_NOSIGNAL);
    }
    int r = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    return r > 0 ? r : fh_tls_result(c, r, want_out);
}

static ssize_t fh_read(struct fh_conn *c, void *p, size_t n, bool *want_out)
{
    *want_out = false;
    if (c->ssl == NULL) {
        return recv(c->fd, p, n, 0);
    }
    int r = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    return r > 0 ? r : fh_tls_result(c, r, want_out);
}

static ot_err fh_flush(struct fh_conn *c)
{
    bool want_out = true;
    while (c->out_off < c->out.len) {
        ssize_t w = fh_write(c, c->out.data + c->out_off, c->out.len - c->out_off, &want_out);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                fh_watch(c, want_out);
                return OT_OK;
            }
            if (errno == EINTR) {
                continue;
            }
            return OT_E_IO;
        }
        if (w == 0) {
            return OT_E_IO;
        }
        c->out_off += (size_t)w;
    }
    ot_buf_free(&c->out);
    ot_buf_init(&c->out, FH_BODY_MAX + FH_HEAD_MAX);
    c->out_off = 0;
    fh_watch(c, false);
    return OT_OK;
}

ot_err fh_send(struct fh_conn *c, const char *method, const char *path, const char *token,
               const char *extra, const char *ctype, const void *body, size_t len, fh_done_fn done,
               void *ctx)
{
    char head[1024];
    ot_err err = OT_OK;

    if (c->busy || c->streaming) {
        return OT_E_STATE;
    }
    if (c->fd >= 0 && c->must_close) {
        fh_close(c);
    }
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s%s%s%s"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, c->loop->host, token ? "Authorization: Bearer " : "",
                     token ? token : "", token ? "\r\n" : "", ctype ? "Content-Type: " : "",
                     ctype ? ctype : "", ctype ? "\r\n" : "", extra ? extra : "", len);
    if (n < 0 || (size_t)n >= sizeof head) {
        return OT_E_TOO_LONG;
    }
    ot_buf_reset(&c->out);
    ot_buf_free(&c->in);
    ot_buf_init(&c->in, FH_BODY_MAX + FH_HEAD_MAX);
    c->hdr_end = 0;
    c->clen = 0;
    c->status = 0;
    c->out_off = 0;
    OT_TRY(ot_buf_append(&c->out, head, (size_t)n));
    if (len > 0) {
        OT_TRY(ot_buf_append(&c->out, body, len));
    }
    c->done = done;
    c->ctx = ctx;
    c->reused = c->fd >= 0;
    if (c->fd < 0) {
        OT_TRY(fh_connect(c));
    }
    c->busy = true;
    if (!c->connecting && !c->handshaking) {
        err = fh_flush(c);
    }
out:
    return err;
}

const uint8_t *fh_body(const struct fh_conn *c, size_t *len)
{
    *len = c->hdr_end > 0 ? c->clen : 0;
    return c->hdr_end > 0 ? c->in.data + c->hdr_end : NULL;
}

bool fh_head_get(const uint8_t *head, size_t head_len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = (const char *)head;
    const char *end = p + head_len;

    if (head == NULL || head_len == 0) {
        return false;
    }
    p = memchr(p, '\n', (size_t)(end - p)); /* skip the status line */
    while (p != NULL && ++p < end) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (e == NULL) {
            break;
        }
        size_t ll = (size_t)(e - p);
        if (ll > 0 && p[ll - 1] == '\r') {
            ll--;
        }
        if (ll > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            size_t vl = ll - nl - 1;
            while (vl > 0 && (*v == ' ' || *v == '\t')) {
                v++;
                vl--;
            }
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) {
                vl--;
            }
            if (vl >= cap || memchr(v, '\0', vl) != NULL) {
                return false;
            }
            memcpy(out, v, vl);
            out[vl] = '\0';
            return true;
        }
        p = e;
    }
    return false;
}

bool fh_header(const struct fh_conn *c, const char *name, char *out, size_t cap)
{
    return c->hdr_end > 0 && fh_head_get(c->in.data, c->hdr_end, name, out, cap);
}

ot_err fh_head_parse(const uint8_t *p, size_t n, struct fh_head *out)
{
    const uint8_t *e = NULL;
    char v[64];

    memset(out, 0, sizeof *out);
    for (size_t i = 3; i < n && i < FH_HEAD_MAX; i++) {
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r') {
            e = p + i + 1;
            break;
        }
    }
    if (e == NULL) {
        return n >= FH_HEAD_MAX ? OT_E_PROTOCOL : OT_E_TRUNCATED;
    }
    out->len = (size_t)(e - p);
    if (out->len < 13 || memcmp(p, "HTTP/1.1 ", 9) != 0 || p[9] < '1' || p[9] > '5' || p[10] < '0'
        || p[10] > '9' || p[11] < '0' || p[11] > '9' || (p[12] != ' ' && p[12] != '\r')) {
        return OT_E_PROTOCOL;
    }
    out->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    out->close = fh_head_get(p, out->len, "Connection", v, sizeof v) && strcasecmp(v, "close") == 0;
    out->stream = out->status == 200 && fh_head_get(p, out->len, "Content-Type", v, sizeof v)
                  && strncmp(v, "text/event-stream", 17) == 0;
    if (!out->stream && out->status != 204 && out->status != 304) {
        char *end = NULL;
        if (!fh_head_get(p, out->len, "Content-Length", v, sizeof v) || v[0] < '0' || v[0] > '9') {
            return OT_E_PROTOCOL;
        }
        errno = 0;
        unsigned long long cl = strtoull(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0' || cl > FH_BODY_MAX) {
            return OT_E_PROTOCOL;
        }
        out->body_len = (size_t)cl;
    }
    return OT_OK;
}

/* Parses the status line and headers once all are in. */
static ot_err fh_parse_head(struct fh_conn *c)
{
    struct fh_head h;
    ot_err err = fh_head_parse(c->in.data, c->in.len, &h);
    if (err != OT_OK) {
        return err;
    }
    c->status = h.status;
    c->hdr_end = h.len;
    c->must_close = h.close;
    c->streaming = h.stream;
    c->clen = h.body_len;
    return OT_OK;
}

/* The bytes after the head of a stream go to the SSE parser. */
static bool fh_feed_stream(struct fh_conn *c, const uint8_t *p, size_t n)
{
    return c->sse == NULL || net_sse_rx_feed(c->sse, (const char *)p, n);
}

static void fh_readable(struct fh_conn *c)
{
    uint8_t tmp[FH_READ_CHUNK];

    for (;;) {
        bool want_out = false;
        ssize_t r = fh_read(c, tmp, sizeof tmp, &want_out);
        if (r == 0) {
            /* A kept-alive connection the server closed before answering:
             * the caller retries on a fresh one (nothing was processed). */
            fh_fail(c, c->streaming                    ? OT_E_CLOSED
                       : (c->reused && c->in.len == 0) ? OT_E_REPLAY
                                                       : OT_E_CLOSED);
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (want_out) {
                    fh_watch(c, true);
                }
                return;
            }
            if (errno == EINTR) {
                continue;
            }
            fh_fail(c, (c->reused && c->in.len == 0 && !c->streaming) ? OT_E_REPLAY : OT_E_IO);
            return;
        }
        if (c->streaming) {
            if (!fh_feed_stream(c, tmp, (size_t)r)) {
                fh_fail(c, OT_E_LIMIT);
                return;
            }
            continue;
        }
        if (!c->busy) {
            fh_fail(c, OT_E_PROTOCOL); /* bytes nobody asked for */
            return;
        }
        if (ot_buf_append(&c->in, tmp, (size_t)r) != OT_OK) {
            fh_fail(c, OT_E_LIMIT);
            return;
        }
        if (c->hdr_end == 0) {
            ot_err e = fh_parse_head(c);
            if (e == OT_E_TRUNCATED) {
                continue;
            }
            if (e != OT_OK) {
                fh_fail(c, e);
                return;
            }
            if (c->streaming) {
                size_t extra = c->in.len - c->hdr_end;
                c->busy = false;
                c->done(c->ctx, c, OT_OK);
                if (c->fd < 0 || !c->streaming) {
                    return; /* the owner closed it */
                }
                if (extra > 0 && !fh_feed_stream(c, c->in.data + c->hdr_end, extra)) {
                    fh_fail(c, OT_E_LIMIT);
                    return;
                }
                ot_buf_free(&c->in);
                ot_buf_init(&c->in, FH_BODY_MAX + FH_HEAD_MAX);
                continue;
            }
        }
        if (c->in.len >= c->hdr_end + c->clen) {
            if (c->in.len > c->hdr_end + c->clen) {
                fh_fail(c, OT_E_PROTOCOL); /* no pipelining here */
                return;
            }
            c->busy = false;
            c->done(c->ctx, c, OT_OK);
            return; /* the callback may have sent again or closed */
        }
    }
}

static ot_err fh_tls_start(struct fh_conn *c)
{
    c->ssl = SSL_new(c->loop->tls);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1
        || X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->loop->tls_ip) != 1) {
        return OT_E_NOMEM;
    }
    SSL_set_connect_state(c->ssl);
    c->handshaking = true;
    return OT_OK;
}

/* Advances the handshake; done: the request waiting goes out. */
static ot_err fh_tls_step(struct fh_conn *c)
{
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->handshaking = false;
        return c->out.len > c->out_off ? fh_flush(c) : OT_OK;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        fh_watch(c, e == SSL_ERROR_WANT_WRITE);
        return OT_OK;
    }
    OT_LOG_WARN("TLS handshake: %s", ERR_reason_error_string(ERR_get_error()));
    ERR_clear_error();
    return OT_E_IO;
}

void fh_loop_poll(struct fh_loop *l, int timeout_ms)
{
    struct epoll_event evs[FH_EVENTS];
    int n = epoll_wait(l->ep, evs, FH_EVENTS, timeout_ms);

    for (int i = 0; i < n; i++) {
        struct fh_conn *c = evs[i].data.ptr;
        uint32_t e = evs[i].events;
        if (c->fd < 0) {
            continue;
        }
        if (c->connecting && (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) {
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
                OT_LOG_DEBUG("connect: %s", strerror(soerr));
                fh_fail(c, OT_E_IO);
                continue;
            }
            c->connecting = false;
            if (c->loop->tls != NULL) {
                if (fh_tls_start(c) != OT_OK) {
                    fh_fail(c, OT_E_IO);
                    continue;
                }
            }
        }
        if (c->handshaking) {
            ot_err he = fh_tls_step(c);
            if (he != OT_OK) {
                fh_fail(c, he);
            }
            if (he != OT_OK || c->handshaking) {
                continue;
            }
        }
        if ((e & EPOLLOUT) != 0 && !c->connecting && c->out.len > c->out_off) {
            if (fh_flush(c) != OT_OK) {
                fh_fail(c, c->reused ? OT_E_REPLAY : OT_E_IO);
                continue;
            }
        } else if ((e & EPOLLOUT) != 0 && !c->connecting) {
            fh_watch(c, false);
            /* A TLS read that had to write first goes on now. */
            e |= c->ssl != NULL ? (uint32_t)EPOLLIN : 0u;
        }
        if (c->fd >= 0 && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
            fh_readable(c);
        }
    }
}
