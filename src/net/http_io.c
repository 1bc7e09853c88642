/* The server's transport: one epoll loop thread that does all socket I/O
 * (accept, TLS handshakes, reading and framing requests, writing answers,
 * deadlines), and a pool of worker threads that run the request pipeline
 * (http.c), where handlers may block on the database.
 *
 * A connection is in one state at a time:
 *   C_TLS    handshake (TLS listeners only)
 *   C_HEAD   reading a request's header section (or idle between requests)
 *   C_BODY   reading its body (Content-Length or chunked)
 *   C_WORK   at a worker: the loop does not touch it (but notes a hang-up)
 *   C_WRITE  writing the answer
 *   C_STREAM an open stream (SSE or a deferred answer, see http_stream.c)
 *   C_LINGER answer sent, write side shut, reading what the client still
 *            sends so that the close does not reset the answer away
 * Deadlines are totals, not idle times (http.h, timeout_s): a client that
 * sends one byte now and then is cut when its time is up. A sweep every
 * NET_SWEEP_MS checks them.
 *
 * Memory per idle connection: the struct below and, with TLS, OpenSSL's
 * SSL object with SSL_MODE_RELEASE_BUFFERS (its record buffers are freed
 * when empty). The input buffer is freed between requests; reads go through
 * the loop's one scratch buffer.
 */
#define _GNU_SOURCE      /* accept4 */
#define OT_LOG_COMPONENT "net.http"
#include "core/buf.h"
#include "core/log.h"
#include "core/thread.h"
#include "net/http_err.h"
#include "net/net_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NET_READ_CHUNK    ((size_t)16 * 1024)
#define NET_IN_MAX        (NET_HTTP_MAX_HEAD + NET_READ_CHUNK) /* buffered input per connection */
#define NET_SWEEP_MS      250
#define NET_FD_RESERVE    128 /* descriptors kept for the database, files, logs */
#define NET_LINGER_S      2
#define NET_DRAIN_MAX     ((size_t)1024 * 1024) /* bytes read and dropped after a final answer */
#define NET_EVENTS        256
#define NET_IP_BUCKETS    4096
#define NET_LISTEN_QUEUE  4096
#define NET_OUT_MAX       (NET_MAX_RESP_BODY + (size_t)64 * 1024)
#define NET_DIRECT_BUDGET 64 /* direct stream writes per loop iteration */

enum net_cstate { C_TLS, C_HEAD, C_BODY, C_WORK, C_WRITE, C_STREAM, C_LINGER };

struct net_ipcount {
    struct net_ipcount *next;
    uint64_t key;
    unsigned n;
};

struct net_conn {
    struct net_conn *prev, *next; /* all connections (loop thread) */
    struct net_conn *qnext;       /* job or done queue */
    struct net_io *io;
    int fd;
    SSL *ssl;
    enum net_cstate state;
    uint32_t events;  /* registered epoll mask */
    bool fresh;       /* no request finished yet on this connection */
    bool started;     /* the current request's first byte arrived */
    bool dead;        /* hung up while at a worker */
    bool close_after; /* close once the answer is written */
    bool kill;        /* close at the end of the current event (see net_conn_kill) */
    bool counted;     /* a dispatched request: in srv->in_flight */
    double deadline;  /* monotonic seconds */
    struct net_ipcount *ipc;
    uint8_t *in; /* buffered input, NULL when empty */
    size_t in_len;
    size_t head_scanned; /* bytes of in scanned for the end of a head */
    struct ot_buf out;
    size_t out_off;
    struct net_req *req;
    struct net_chunked chunk;
    uint64_t body_left;
    size_t drained;
    char *subject;             /* verified client certificate subject (mTLS), else NULL */
    struct net_stream *stream; /* C_STREAM */
    bool stream_ending;        /* close once out is written */
    char ip[INET6_ADDRSTRLEN];
};

struct net_stream {
    pthread_mutex_t mu;
    atomic_int refs;   /* the owner, the connection, the wake queue */
    struct net_io *io; /* valid while !closed */
    bool sse;          /* else a deferred answer */
    bool closed;       /* ended: no more pushes (under mu) */
    bool ending;       /* close once pend/out are written (under mu) */
    bool overflow;     /* over the cap: drop (under mu) */
    bool answered;     /* deferred: the answer is in pend (under mu) */
    bool queued;       /* in io's wake queue (under io->sq_mu) */
    struct net_stream *wnext;
    struct net_conn *conn; /* set by the loop when the stream begins (loop thread) */
    /* A plain SSE socket with nothing unsent: a push writes it directly, from
     * the pushing thread, under mu (the loop writes a stream's socket only
     * while !idle, also deciding that under mu). -1: always through the loop. */
    int direct_fd;
    bool idle;
    struct ot_buf pend; /* pushed, not yet taken by the loop (under mu) */
    size_t cap;
    double expires; /* deferred: timeout (monotonic seconds) */
    int timeout_status;
    net_stream_close_fn on_close;
    void *ctx;
    char request_id[NET_REQUEST_ID_MAX + 3];
};

struct net_io {
    struct net_server *srv;
    int ep, lfd, efd;
    pthread_t loop;
    bool loop_started;
    pthread_t *workers;
    unsigned nworkers;
    pthread_mutex_t mu; /* job queue */
    pthread_cond_t cv;
    struct net_conn *job_head, *job_tail;
    bool quit_workers;
    pthread_mutex_t done_mu; /* done queue */
    struct net_conn *done_head, *done_tail;
    atomic_bool quit;
    atomic_bool close_listener;
    /* Direct writes pushers may do before the loop runs again: one push is
     * written at once, a burst (a fanout) is shared with the loop. */
    atomic_int direct_budget;
    pthread_mutex_t sq_mu; /* streams queued by pushes */
    struct net_stream *sq_head, *sq_tail;
    struct net_conn *conns; /* loop thread only, from here on */
    unsigned nconns;
    struct net_ipcount *ip[NET_IP_BUCKETS];
    unsigned churn;   /* connections opened or closed since the last trim */
    double last_trim; /* monotonic seconds */
    uint8_t scratch[NET_READ_CHUNK];
};

static void net_stream_begin(struct net_conn *c);
static void net_stream_event(struct net_conn *c, uint32_t ev);
static void net_stream_tick(struct net_conn *c, double now);
static void net_stream_drain(struct net_io *io);
static void net_stream_end(struct net_conn *c);
static void net_stream_unref(struct net_stream *st);

double net_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void net_wake(struct net_io *io)
{
    uint64_t one = 1;
    ssize_t n = write(io->efd, &one, sizeof one);
    (void)n; /* a full counter already wakes the loop */
}

/* ---- TLS ---- */

static int net_tls_verify_cb(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1; /* a certificate that does not verify is not an identity (see net_tls_subject) */
}

ot_err net_tls_new(struct net_server *srv, const struct net_server_cfg *cfg)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        return OT_E_NOMEM;
    }
    static const unsigned char sid[] = "opentsm";
    bool ok = SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1
              && SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) == 1
              && SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) == 1
              && SSL_CTX_check_private_key(ctx) == 1
              && SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1) == 1;
    if (ok && cfg->client_ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_ca);
        ok = names && SSL_CTX_load_verify_locations(ctx, cfg->client_ca, NULL) == 1;
        if (names) {
            SSL_CTX_set_client_CA_list(ctx, names);
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, net_tls_verify_cb);
    }
    if (!ok) {
        unsigned long e = ERR_get_error();
        char msg[256];
        ERR_error_string_n(e, msg, sizeof msg);
        OT_LOG_ERROR("TLS setup (%s, %s%s%s): %s", cfg->tls_cert, cfg->tls_key,
                     cfg->client_ca ? ", " : "", cfg->client_ca ? cfg->client_ca : "", msg);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return OT_E_IO;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE
                              | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    srv->ssl_ctx = ctx;
    srv->cfg.client_ca = cfg->client_ca ? "set" : NULL; /* a flag from here on */
    return OT_OK;
}

/* The peer certificate's subject (RFC 4514 order and escaping, UTF-8 kept)
 * when it verified against client_ca. */
static char *net_tls_subject(SSL *ssl)
{
    X509 *crt = SSL_get1_peer_certificate(ssl);
    char *out = NULL;
    if (!crt) {
        return NULL;
    }
    if (SSL_get_verify_result(ssl) == X509_V_OK) {
        BIO *b = BIO_new(BIO_s_mem());
        unsigned long fl = XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB;
        if (b && X509_NAME_print_ex(b, X509_get_subject_name(crt), 0, fl) >= 0) {
            char *p = NULL;
            long n = BIO_get_mem_data(b, &p);
            if (n > 0 && n < 512 && p) {
                out = malloc((size_t)n + 1);
                if (out) {
                    memcpy(out, p, (size_t)n);
                    out[n] = '\0';
                }
            }
        }
        BIO_free(b);
    }
    X509_free(crt);
    return out;
}

/* ---- per-IP connection counts (loop thread only) ---- */

static struct net_ipcount *net_ip_take(struct net_io *io, const char *ip)
{
    uint64_t k = net_rl_hash(ip);
    struct net_ipcount **slot = &io->ip[k % NET_IP_BUCKETS];
    struct net_ipcount *e = *slot;
    while (e && e->key != k) {
        e = e->next;
    }
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e) {
            return NULL;
        }
        e->key = k;
        e->next = *slot;
        *slot = e;
    }
    if (e->n >= io->srv->cfg.max_conns_per_ip) {
        return NULL;
    }
    e->n++;
    return e;
}

static void net_ip_release(struct net_io *io, struct net_ipcount *e)
{
    if (!e || --e->n > 0) {
        return;
    }
    struct net_ipcount **p = &io->ip[e->key % NET_IP_BUCKETS];
    while (*p && *p != e) {
        p = &(*p)->next;
    }
    if (*p) {
        *p = e->next;
    }
    free(e);
}

/* ---- connections ---- */

static void net_conn_events(struct net_conn *c, uint32_t ev)
{
    if (c->events == ev || c->fd < 0) {
        return;
    }
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(c->io->ep, EPOLL_CTL_MOD, c->fd, &e) == 0) {
        c->events = ev;
    }
}

static void net_conn_close(struct net_conn *c)
{
    struct net_io *io = c->io;
    /* The owner of a stream hears of the end before the peer does. */
    if (c->req && c->req->resp.stream && !c->stream) {
        c->stream = c->req->resp.stream; /* opened by the handler, never begun */
        c->req->resp.stream = NULL;
    }
    if (c->stream) {
        if (c->state == C_STREAM) {
            atomic_fetch_sub(&io->srv->streams_open, 1);
        }
        net_stream_end(c);
    }
    if (c->fd >= 0) {
        (void)epoll_ctl(io->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    SSL_free(c->ssl);
    if (c->counted) {
        net_inflight(io->srv, -1);
    }
    net_req_free(c->req);
    free(c->in);
    ot_buf_free(&c->out);
    free(c->subject);
    net_ip_release(io, c->ipc);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        io->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    io->nconns--;
    io->churn++;
    atomic_fetch_sub(&io->srv->conns_open, 1);
    free(c);
}

/* Reads up to n bytes. >0: bytes; 0: nothing now (*eof tells a closed or
 * failed connection); TLS wants are handled through c->events. */
static size_t net_conn_recv(struct net_conn *c, uint8_t *buf, size_t n, bool *eof)
{
    *eof = false;
    if (c->ssl) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, buf, (int)n);
        if (r > 0) {
            return (size_t)r;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            return 0;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            net_conn_events(c, c->events | EPOLLOUT);
            return 0;
        }
        *eof = true;
        return 0;
    }
    ssize_t r = recv(c->fd, buf, n, 0);
    if (r > 0) {
        return (size_t)r;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return 0;
    }
    *eof = true;
    return 0;
}

/* Writes what it can of p[0..n). Returns bytes written; *fail on error. */
static size_t net_conn_send(struct net_conn *c, const uint8_t *p, size_t n, bool *fail)
{
    *fail = false;
    if (n == 0) {
        return 0;
    }
    if (c->ssl) {
        ERR_clear_error();
        int r = SSL_write(c->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));
        if (r > 0) {
            return (size_t)r;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) {
            *fail = true;
        }
        return 0;
    }
    ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
    if (r >= 0) {
        return (size_t)r;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        *fail = true;
    }
    return 0;
}

static void net_conn_consume(struct net_conn *c, size_t n)
{
    if (n >= c->in_len) {
        free(c->in);
        c->in = NULL;
        c->in_len = 0;
        return;
    }
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

static bool net_conn_append(struct net_conn *c, const uint8_t *p, size_t n)
{
    uint8_t *b = realloc(c->in, c->in_len + n);
    if (!b) {
        return false;
    }
    memcpy(b + c->in_len, p, n);
    c->in = b;
    c->in_len += n;
    return true;
}

static void net_conn_flush(struct net_conn *c);

/* Closing frees c: nested steps only mark it, the event's top level
 * closes (net_conn_event). */
static void net_conn_kill(struct net_conn *c)
{
    c->kill = true;
}

/* A framing error answered by the loop itself: JSON body, then close. */
static void net_conn_fail(struct net_conn *c, int status, const char *msg)
{
    struct net_server *srv = c->io->srv;
    const char *code = status == 414   ? "uri_too_long"
                       : status == 431 ? "headers_too_large"
                       : status == 505 ? "http_version_not_supported"
                                       : "invalid_request";
    OT_LOG_INFO("ip=%s rejected request: %d %s", c->ip, status, msg);
    net_metrics_observe(srv->metrics, srv->metrics_unmatched, status, 0);
    ot_buf_free(&c->out);
    ot_buf_init(&c->out, NET_OUT_MAX);
    c->out_off = 0;
    if (net_plain_error(&c->out, status, code, msg) != OT_OK) {
        net_conn_kill(c);
        return;
    }
    net_req_free(c->req);
    c->req = NULL;
    c->close_after = true;
    c->state = C_WRITE;
    c->deadline = net_mono() + c->io->srv->cfg.timeout_s;
    net_conn_flush(c);
}

static void net_conn_dispatch(struct net_conn *c)
{
    struct net_io *io = c->io;
    c->state = C_WORK;
    c->counted = true;
    net_inflight(io->srv, 1);
    net_conn_events(c, 0);
    pthread_mutex_lock(&io->mu);
    c->qnext = NULL;
    if (io->job_tail) {
        io->job_tail->qnext = c;
    } else {
        io->job_head = c;
    }
    io->job_tail = c;
    pthread_cond_signal(&io->cv);
    pthread_mutex_unlock(&io->mu);
}

/* A new request's header section is in c->in[0..hl). */
static void net_conn_start_request(struct net_conn *c, size_t hl)
{
    struct net_server *srv = c->io->srv;
    struct net_req *req = calloc(1, sizeof *req);
    if (!req || !(req->head = malloc(hl + 1))) {
        free(req);
        net_conn_kill(c);
        return;
    }
    memcpy(req->head, c->in, hl);
    net_conn_consume(c, hl);
    c->req = req;
    req->srv = srv;
    req->conn = c;
    req->t0 = net_mono();
    ot_buf_init(&req->body, srv->cfg.max_body);
    (void)snprintf(req->peer_ip, sizeof req->peer_ip, "%s", c->ip);
    if (c->subject) {
        (void)snprintf(req->subject, sizeof req->subject, "%s", c->subject);
    }
    int status = 0;
    const char *msg = NULL;
    if (net_http_parse_head(req->head, hl, &req->h, &status, &msg) != OT_OK) {
        net_conn_fail(c, status, msg);
        return;
    }
    req->close = !req->h.keep_alive;
    memset(&c->chunk, 0, sizeof c->chunk);
    c->body_left = 0;
    bool body = false;
    if (req->h.chunked) {
        body = true;
    } else if (req->h.has_length && req->h.content_length > 0) {
        if (req->h.content_length > srv->cfg.max_body) {
            req->too_large = true;
            req->close = true;
            net_conn_dispatch(c);
            return;
        }
        c->body_left = req->h.content_length;
        body = true;
    }
    if (!body) {
        net_conn_dispatch(c);
        return;
    }
    c->state = C_BODY;
    if (req->h.expect_continue) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        bool fail = false;
        size_t n = net_conn_send(c, (const uint8_t *)cont, sizeof cont - 1, &fail);
        if (fail || n != sizeof cont - 1) {
            net_conn_kill(c); /* a 26-byte write on a fresh socket does not block */
            return;
        }
    }
}

/* Frames what c->in holds. Returns when more input is needed, or when the
 * request went to a worker or the connection changed state. */
static void net_conn_parse(struct net_conn *c)
{
    for (;;) {
        if (c->state == C_HEAD) {
            if (c->in_len == 0) {
                return;
            }
            if (!c->started) {
                c->started = true;
                if (!c->fresh) {
                    c->deadline = net_mono() + c->io->srv->cfg.timeout_s;
                }
            }
            size_t hl = 0;
            int status = 0;
            ot_err e = net_http_head_end(c->in, c->in_len, c->head_scanned, &hl, &status);
            if (e == OT_E_TRUNCATED) {
                c->head_scanned = c->in_len;
                return;
            }
            c->head_scanned = 0;
            if (e != OT_OK) {
                net_conn_fail(c, status,
                              status == 414   ? "request target too long"
                              : status == 431 ? "header section too large"
                                              : "lines must end with CRLF");
                return;
            }
            net_conn_start_request(c, hl);
            if (c->kill) {
                return;
            }
            continue;
        }
        if (c->state != C_BODY) {
            return;
        }
        struct net_req *req = c->req;
        if (req->h.chunked) {
            size_t used = 0;
            const char *msg = NULL;
            ot_err e = net_chunked_feed(&c->chunk, c->in, c->in_len, &used, &req->body, &msg);
            net_conn_consume(c, used);
            if (e == OT_E_FORMAT) {
                net_conn_fail(c, 400, msg);
                return;
            }
            if (e == OT_E_LIMIT) {
                req->too_large = true;
                req->close = true;
                ot_buf_free(&req->body);
                ot_buf_init(&req->body, c->io->srv->cfg.max_body);
                net_conn_dispatch(c);
                return;
            }
            if (!c->chunk.done) {
                return;
            }
            net_conn_dispatch(c);
            return;
        }
        size_t take = c->in_len < c->body_left ? c->in_len : (size_t)c->body_left;
        if (take > 0 && ot_buf_append(&req->body, c->in, take) != OT_OK) {
            net_conn_kill(c);
            return;
        }
        net_conn_consume(c, take);
        c->body_left -= take;
        if (c->body_left > 0) {
            return;
        }
        net_conn_dispatch(c);
        return;
    }
}

/* Reads what the socket has (bounded) and frames it. */
static void net_conn_read(struct net_conn *c)
{
    struct net_io *io = c->io;
    for (;;) {
        if (c->kill || (c->state != C_HEAD && c->state != C_BODY) || c->in_len >= NET_IN_MAX) {
            return;
        }
        bool eof = false;
        size_t n = net_conn_recv(c, io->scratch, sizeof io->scratch, &eof);
        if (eof) {
            net_conn_kill(c);
            return;
        }
        if (n == 0) {
            return;
        }
        if (!net_conn_append(c, io->scratch, n)) {
            net_conn_kill(c);
            return;
        }
        net_conn_parse(c);
    }
}

/* The answer is out: next request, linger, or close. */
static void net_conn_done(struct net_conn *c)
{
    struct net_io *io = c->io;
    ot_buf_free(&c->out);
    ot_buf_init(&c->out, NET_OUT_MAX);
    c->out_off = 0;
    if (c->counted) {
        c->counted = false;
        net_inflight(io->srv, -1);
    }
    bool close = c->close_after || (c->req && c->req->close) || atomic_load(&io->srv->stopping);
    net_req_free(c->req);
    c->req = NULL;
    if (close) {
        if (c->ssl) {
            (void)SSL_shutdown(c->ssl);
        }
        (void)shutdown(c->fd, SHUT_WR);
        free(c->in);
        c->in = NULL;
        c->in_len = 0;
        c->state = C_LINGER;
        c->drained = 0;
        c->deadline = net_mono() + NET_LINGER_S;
        net_conn_events(c, EPOLLIN);
        return;
    }
    c->fresh = false;
    c->started = false;
    c->state = C_HEAD;
    c->deadline = net_mono() + io->srv->cfg.timeout_s;
    net_conn_events(c, EPOLLIN);
    net_conn_parse(c); /* a pipelined request already in */
    net_conn_read(c);  /* or in TLS's buffer */
}

static void net_conn_flush(struct net_conn *c)
{
    while (c->out_off < c->out.len) {
        bool fail = false;
        size_t n = net_conn_send(c, c->out.data + c->out_off, c->out.len - c->out_off, &fail);
        if (fail) {
            net_conn_kill(c);
            return;
        }
        if (n == 0) {
            net_conn_events(c, EPOLLIN | EPOLLOUT);
            return;
        }
        c->out_off += n;
    }
    if (c->state == C_WRITE) {
        net_conn_done(c);
    } else if (c->state == C_STREAM) {
        if (c->ssl) {
            (void)SSL_free_buffers(c->ssl); /* fails (harmlessly) if a record is pending */
        }
        ot_buf_free(&c->out); /* an idle stream holds no buffer */
        ot_buf_init(&c->out, NET_OUT_MAX);
        c->out_off = 0;
        net_conn_events(c, EPOLLIN);
        if (c->stream_ending) {
            net_conn_kill(c);
        } else {
            struct net_stream *st = c->stream;
            pthread_mutex_lock(&st->mu);
            st->idle = st->pend.len == 0 && !st->ending && !st->overflow;
            pthread_mutex_unlock(&st->mu);
        }
    }
}

static void net_conn_linger(struct net_conn *c)
{
    struct net_io *io = c->io;
    for (;;) {
        ssize_t r = recv(c->fd, io->scratch, sizeof io->scratch, 0);
        if (r > 0) {
            c->drained += (size_t)r;
            if (c->drained > NET_DRAIN_MAX) {
                net_conn_kill(c);
                return;
            }
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            return;
        }
        net_conn_kill(c);
        return;
    }
}

static void net_conn_handshake(struct net_conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        if (c->io->srv->cfg.client_ca) {
            c->subject = net_tls_subject(c->ssl);
        }
        c->state = C_HEAD;
        net_conn_events(c, EPOLLIN);
        net_conn_read(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        net_conn_events(c, EPOLLIN);
    } else if (e == SSL_ERROR_WANT_WRITE) {
        net_conn_events(c, EPOLLIN | EPOLLOUT);
    } else {
        OT_LOG_DEBUG("ip=%s TLS handshake failed", c->ip);
        ERR_clear_error();
        /* Close without a reset (plain HTTP to a TLS port, say): end our
         * side, read what the peer still sends, then close. */
        (void)shutdown(c->fd, SHUT_WR);
        c->state = C_LINGER;
        c->drained = 0;
        c->deadline = net_mono() + NET_LINGER_S;
        net_conn_events(c, EPOLLIN);
        net_conn_linger(c);
    }
}

static void net_conn_event(struct net_conn *c, uint32_t ev)
{
    if (c->state == C_WORK) {
        if (ev & (EPOLLHUP | EPOLLERR)) {
            c->dead = true; /* closed when the worker hands it back */
            net_conn_events(c, 0);
            (void)epoll_ctl(c->io->ep, EPOLL_CTL_DEL, c->fd, NULL);
        }
        return;
    }
    switch (c->state) {
    case C_TLS:
        net_conn_handshake(c);
        break;
    case C_HEAD:
    case C_BODY:
        /* Nothing to write in these states: EPOLLOUT was only TLS asking to
         * retry a read; drop it (level-triggered, it would fire forever)
         * and let the read ask again if it must. */
        net_conn_events(c, EPOLLIN);
        net_conn_read(c);
        if (!c->kill && (ev & (EPOLLHUP | EPOLLERR)) && c->state != C_WORK) {
            net_conn_kill(c);
        }
        break;
    case C_WRITE:
        net_conn_flush(c);
        break;
    case C_STREAM:
        net_stream_event(c, ev);
        break;
    case C_LINGER:
        net_conn_linger(c);
        break;
    case C_WORK:
        break;
    }
    if (c->kill) {
        net_conn_close(c);
    }
}

/* Answers handed back by the workers. */
static void net_io_drain_done(struct net_io *io)
{
    pthread_mutex_lock(&io->done_mu);
    struct net_conn *c = io->done_head;
    io->done_head = io->done_tail = NULL;
    pthread_mutex_unlock(&io->done_mu);
    while (c) {
        struct net_conn *next = c->qnext;
        c->qnext = NULL;
        if (c->dead) {
            net_conn_close(c);
        } else if (c->req && c->req->resp.stream) {
            net_stream_begin(c);
            if (c->kill) {
                net_conn_close(c);
            }
        } else {
            c->state = C_WRITE;
            c->deadline = net_mono() + io->srv->cfg.timeout_s;
            net_conn_flush(c);
            if (c->kill) {
                net_conn_close(c);
            }
        }
        c = next;
    }
}

static void net_io_accept(struct net_io *io)
{
    struct net_server *srv = io->srv;
    for (int i = 0; i < NET_EVENTS; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(io->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                OT_LOG_WARN("accept: %s", strerror(errno));
            }
            return;
        }
        char ip[INET6_ADDRSTRLEN] = "?";
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)&ss)->sin_addr, ip, sizeof ip);
        } else if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)&ss)->sin6_addr, ip, sizeof ip);
        }
        if (io->nconns >= srv->cfg.max_conns) {
            OT_LOG_DEBUG("ip=%s refused: %u connections", ip, io->nconns);
            close(fd);
            continue;
        }
        struct net_ipcount *ipc = net_ip_take(io, ip);
        if (!ipc) {
            OT_LOG_DEBUG("ip=%s refused: per-IP connection cap", ip);
            close(fd);
            continue;
        }
        struct net_conn *c = calloc(1, sizeof *c);
        if (!c) {
            net_ip_release(io, ipc);
            close(fd);
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->io = io;
        c->fd = fd;
        c->ipc = ipc;
        c->fresh = true;
        c->started = true; /* the first request's time runs from the connection's start */
        memcpy(c->ip, ip, sizeof c->ip);
        ot_buf_init(&c->out, NET_OUT_MAX);
        c->deadline = net_mono() + srv->cfg.timeout_s;
        c->state = C_HEAD;
        if (srv->ssl_ctx) {
            c->ssl = SSL_new(srv->ssl_ctx);
            if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
                SSL_free(c->ssl);
                net_ip_release(io, ipc);
                free(c);
                close(fd);
                continue;
            }
            SSL_set_accept_state(c->ssl);
            c->state = C_TLS;
        }
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(io->ep, EPOLL_CTL_ADD, fd, &e) != 0) {
            SSL_free(c->ssl);
            net_ip_release(io, ipc);
            free(c);
            close(fd);
            continue;
        }
        c->events = EPOLLIN;
        c->next = io->conns;
        if (io->conns) {
            io->conns->prev = c;
        }
        io->conns = c;
        io->nconns++;
        io->churn++;
        atomic_fetch_add(&srv->conns_open, 1);
    }
}

/* TLS handshakes allocate and free far more than a connection keeps; the
 * freed pages sit between long-lived objects, where the allocator never
 * returns them. After a burst of connections, give them back (glibc's
 * malloc_trim releases free pages inside the heap, not only its top). */
#define NET_TRIM_CHURN 256
static void net_io_trim(struct net_io *io, double now)
{
    if (io->churn >= NET_TRIM_CHURN && now - io->last_trim >= 1.0) {
        io->churn = 0;
        io->last_trim = now;
        (void)malloc_trim(0);
    }
}

static void net_io_sweep(struct net_io *io, double now)
{
    net_io_trim(io, now);
    struct net_conn *c = io->conns;
    while (c) {
        struct net_conn *next = c->next;
        if (c->state == C_STREAM) {
            net_stream_tick(c, now);
        } else if (c->state != C_WORK && now > c->deadline) {
            OT_LOG_DEBUG("ip=%s connection deadline passed (state %d)", c->ip, (int)c->state);
            net_conn_kill(c);
        }
        if (c->kill) {
            net_conn_close(c);
        }
        c = next;
    }
}

static void *net_io_loop(void *arg)
{
    struct net_io *io = arg;
    struct epoll_event ev[NET_EVENTS];
    double next_sweep = net_mono() + NET_SWEEP_MS / 1e3;
    while (!atomic_load(&io->quit)) {
        int n = epoll_wait(io->ep, ev, NET_EVENTS, NET_SWEEP_MS);
        atomic_store(&io->direct_budget, NET_DIRECT_BUDGET);
        for (int i = 0; i < n; i++) {
            void *p = ev[i].data.ptr;
            if (p == &io->lfd) {
                net_io_accept(io);
            } else if (p == &io->efd) {
                uint64_t v;
                ssize_t r = read(io->efd, &v, sizeof v);
                (void)r;
                net_io_drain_done(io);
                net_stream_drain(io);
            } else {
                net_conn_event(p, ev[i].events);
            }
        }
        if (atomic_load(&io->close_listener) && io->lfd >= 0) {
            (void)epoll_ctl(io->ep, EPOLL_CTL_DEL, io->lfd, NULL);
            close(io->lfd);
            io->lfd = -1;
        }
        double now = net_mono();
        if (now >= next_sweep) {
            net_io_sweep(io, now);
            next_sweep = now + NET_SWEEP_MS / 1e3;
        }
    }
    return NULL;
}

static void *net_io_worker(void *arg)
{
    struct net_io *io = arg;
    for (;;) {
        pthread_mutex_lock(&io->mu);
        while (!io->job_head && !io->quit_workers) {
            pthread_cond_wait(&io->cv, &io->mu);
        }
        struct net_conn *c = io->job_head;
        if (!c) {
            pthread_mutex_unlock(&io->mu);
            return NULL;
        }
        io->job_head = c->qnext;
        if (!io->job_head) {
            io->job_tail = NULL;
        }
        pthread_mutex_unlock(&io->mu);

        struct net_req *req = c->req;
        net_process(req);
        struct net_stream *st = req->resp.stream;
        if (!st || st->sse) {
            if (net_resp_serialize(req, &c->out) != OT_OK) {
                ot_buf_free(&c->out);
                ot_buf_init(&c->out, NET_OUT_MAX);
                req->close = true;
                (void)net_plain_error(&c->out, 503, "unavailable", "out of memory");
            }
        }
        net_finish(req);
        pthread_mutex_lock(&io->done_mu);
        c->qnext = NULL;
        if (io->done_tail) {
            io->done_tail->qnext = c;
        } else {
            io->done_head = c;
        }
        io->done_tail = c;
        pthread_mutex_unlock(&io->done_mu);
        net_wake(io);
    }
}

static int net_listen(struct net_server *srv, uint16_t *port)
{
    struct addrinfo hints = {0}, *ai = NULL;
    char ps[8];
    (void)snprintf(ps, sizeof ps, "%u", (unsigned)srv->cfg.port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    int rc = getaddrinfo(srv->host, ps, &hints, &ai);
    if (rc != 0 || !ai) {
        OT_LOG_ERROR("bad listen address %s: %s", srv->host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0
        || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, NET_LISTEN_QUEUE) != 0) {
        OT_LOG_ERROR("cannot listen on %s:%u: %s", srv->host, (unsigned)srv->cfg.port,
                     strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    *port = srv->cfg.port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)(void *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)(void *)&ss)->sin_port);
    }
    return fd;
}

/* The connection cap: the configured one, or what RLIMIT_NOFILE allows
 * (raised to its hard limit) minus a reserve. */
static void net_conn_cap(struct net_server *srv)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        rl.rlim_cur = rl.rlim_max = 1024;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0) {
            rl.rlim_cur = rl.rlim_max;
        }
    }
    rlim_t avail =
        rl.rlim_cur > 2 * NET_FD_RESERVE ? rl.rlim_cur - NET_FD_RESERVE : rl.rlim_cur / 2;
    if (avail > UINT32_MAX / 2) {
        avail = UINT32_MAX / 2;
    }
    if (srv->cfg.max_conns == 0) {
        srv->cfg.max_conns = (unsigned)avail;
    } else if (srv->cfg.max_conns > avail) {
        OT_LOG_WARN("max_conns %u over what RLIMIT_NOFILE allows; using %u", srv->cfg.max_conns,
                    (unsigned)avail);
        srv->cfg.max_conns = (unsigned)avail;
    }
}

static void net_io_free(struct net_io *io)
{
    if (!io) {
        return;
    }
    while (io->conns) {
        net_conn_close(io->conns);
    }
    for (size_t i = 0; i < NET_IP_BUCKETS; i++) {
        while (io->ip[i]) {
            struct net_ipcount *e = io->ip[i];
            io->ip[i] = e->next;
            free(e);
        }
    }
    if (io->lfd >= 0) {
        close(io->lfd);
    }
    if (io->efd >= 0) {
        close(io->efd);
    }
    if (io->ep >= 0) {
        close(io->ep);
    }
    pthread_mutex_destroy(&io->mu);
    pthread_cond_destroy(&io->cv);
    pthread_mutex_destroy(&io->done_mu);
    while (io->sq_head) {
        struct net_stream *st = io->sq_head;
        io->sq_head = st->wnext;
        net_stream_unref(st);
    }
    pthread_mutex_destroy(&io->sq_mu);
    free(io->workers);
    free(io);
}

static void net_io_join(struct net_io *io)
{
    if (io->loop_started) {
        atomic_store(&io->quit, true);
        net_wake(io);
        pthread_join(io->loop, NULL);
        io->loop_started = false;
    }
    pthread_mutex_lock(&io->mu);
    io->quit_workers = true;
    pthread_cond_broadcast(&io->cv);
    pthread_mutex_unlock(&io->mu);
    for (unsigned i = 0; i < io->nworkers; i++) {
        pthread_join(io->workers[i], NULL);
    }
    io->nworkers = 0;
}

ot_err net_io_start(struct net_server *srv)
{
    struct net_io *io = calloc(1, sizeof *io);
    if (!io) {
        return OT_E_NOMEM;
    }
    io->srv = srv;
    io->lfd = io->efd = io->ep = -1;
    pthread_mutex_init(&io->mu, NULL);
    pthread_cond_init(&io->cv, NULL);
    pthread_mutex_init(&io->done_mu, NULL);
    pthread_mutex_init(&io->sq_mu, NULL);
    net_conn_cap(srv);
    io->lfd = net_listen(srv, &srv->port);
    io->ep = epoll_create1(EPOLL_CLOEXEC);
    io->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    io->workers = calloc(srv->cfg.threads, sizeof *io->workers);
    if (io->lfd < 0 || io->ep < 0 || io->efd < 0 || !io->workers) {
        net_io_free(io);
        srv->port = 0;
        return OT_E_IO;
    }
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = &io->lfd};
    struct epoll_event ee = {.events = EPOLLIN, .data.ptr = &io->efd};
    if (epoll_ctl(io->ep, EPOLL_CTL_ADD, io->lfd, &le) != 0
        || epoll_ctl(io->ep, EPOLL_CTL_ADD, io->efd, &ee) != 0) {
        net_io_free(io);
        return OT_E_IO;
    }
    for (unsigned i = 0; i < srv->cfg.threads; i++) {
        if (pthread_create(&io->workers[i], NULL, net_io_worker, io) != 0) {
            net_io_join(io);
            net_io_free(io);
            return OT_E_IO;
        }
        io->nworkers++;
    }
    if (pthread_create(&io->loop, NULL, net_io_loop, io) != 0) {
        net_io_join(io);
        net_io_free(io);
        return OT_E_IO;
    }
    io->loop_started = true;
    srv->io = io;
    return OT_OK;
}

void net_io_stop(struct net_server *srv, unsigned grace_ms)
{
    struct net_io *io = srv->io;
    atomic_store(&io->close_listener, true);
    net_wake(io);
    struct timespec until;
    ot_deadline_after_ms((long)grace_ms, &until);
    pthread_mutex_lock(&srv->mu);
    while (srv->in_flight > 0) {
        if (pthread_cond_timedwait(&srv->cv, &srv->mu, &until) != 0) {
            break;
        }
    }
    unsigned left = srv->in_flight;
    pthread_mutex_unlock(&srv->mu);
    if (left > 0) {
        OT_LOG_WARN("stopping with %u requests still in flight", left);
    }
    net_io_join(io);
    /* Answers the workers finished after the loop stopped, and requests
     * that never reached a worker: their connections are in io->conns. */
    net_io_free(io);
    srv->io = NULL;
}

/* ---- streams ---- */

static struct net_stream *net_stream_new(struct net_resp *resp, bool sse, net_stream_close_fn fn,
                                         void *ctx)
{
    struct net_req *req = (struct net_req *)(void *)((char *)resp - offsetof(struct net_req, resp));
    struct net_server *srv = req->srv;
    if (resp->stream || !srv->io) {
        return NULL;
    }
    struct net_stream *st = calloc(1, sizeof *st);
    if (!st) {
        net_resp_error(resp, OT_E_NOMEM, NULL, NULL, NULL);
        return NULL;
    }
    pthread_mutex_init(&st->mu, NULL);
    atomic_init(&st->refs, 2); /* the owner and the connection */
    st->io = srv->io;
    st->direct_fd = -1;
    st->sse = sse;
    st->cap = srv->cfg.stream_buf_max;
    st->on_close = fn;
    st->ctx = ctx;
    ot_buf_init(&st->pend, st->cap + 1024);
    (void)snprintf(st->request_id, sizeof st->request_id, "%s", req->request_id);
    net_resp_bytes(resp, 200, sse ? "text/event-stream" : "application/json", NULL, 0);
    resp->stream = st;
    return st;
}

struct net_stream *net_resp_sse(struct net_resp *resp, net_stream_close_fn on_close, void *ctx)
{
    return net_stream_new(resp, true, on_close, ctx);
}

struct net_stream *net_resp_defer(struct net_resp *resp, unsigned timeout_ms, int timeout_status,
                                  net_stream_close_fn on_close, void *ctx)
{
    struct net_stream *st = net_stream_new(resp, false, on_close, ctx);
    if (st) {
        st->expires = net_mono() + (timeout_ms ? timeout_ms : 30000) / 1e3;
        st->timeout_status = timeout_status;
    }
    return st;
}

static void net_stream_unref(struct net_stream *st)
{
    if (st && atomic_fetch_sub(&st->refs, 1) == 1) {
        ot_buf_free(&st->pend);
        pthread_mutex_destroy(&st->mu);
        free(st);
    }
}

void net_stream_release(struct net_stream *st)
{
    net_stream_unref(st);
}

/* Queues st for the loop (caller holds st->mu, st not closed). */
static void net_stream_kick(struct net_stream *st)
{
    struct net_io *io = st->io;
    bool first = false;
    pthread_mutex_lock(&io->sq_mu);
    if (!st->queued) {
        st->queued = true;
        atomic_fetch_add(&st->refs, 1);
        st->wnext = NULL;
        first = io->sq_head == NULL;
        if (io->sq_tail) {
            io->sq_tail->wnext = st;
        } else {
            io->sq_head = st;
        }
        io->sq_tail = st;
    }
    pthread_mutex_unlock(&io->sq_mu);
    if (first) {
        net_wake(io);
    }
}

static bool net_sse_field_ok(const char *s)
{
    return !s || strpbrk(s, "\r\n") == NULL;
}

ot_err net_stream_send(struct net_stream *st, const char *id, const char *event, const char *data)
{
    if (!st || !net_sse_field_ok(id) || !net_sse_field_ok(event) || (data && strchr(data, '\r'))) {
        return OT_E_ARG;
    }
    if (!st->sse) {
        return OT_E_STATE;
    }
    /* Format outside the lock, in one piece (on the stack when small). */
    const char *d = data ? data : "";
    size_t lines = 1;
    for (const char *q = strchr(d, '\n'); q; q = strchr(q + 1, '\n')) {
        lines++;
    }
    size_t idl = id ? strlen(id) : 0, evl = event ? strlen(event) : 0, dl = strlen(d);
    size_t need = (id ? 5 + idl : 0) + (event ? 8 + evl : 0) + lines * 7 + dl + 1;
    if (need > st->cap + 1024) {
        return OT_E_LIMIT;
    }
    char small[512];
    char *buf = need <= sizeof small ? small : malloc(need);
    if (!buf) {
        return OT_E_NOMEM;
    }
    size_t o = 0;
    if (id) {
        memcpy(buf + o, "id: ", 4);
        memcpy(buf + o + 4, id, idl);
        buf[o + 4 + idl] = '\n';
        o += 5 + idl;
    }
    if (event) {
        memcpy(buf + o, "event: ", 7);
        memcpy(buf + o + 7, event, evl);
        buf[o + 7 + evl] = '\n';
        o += 8 + evl;
    }
    for (const char *p = d;;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        memcpy(buf + o, "data: ", 6);
        memcpy(buf + o + 6, p, n);
        buf[o + 6 + n] = '\n';
        o += 7 + n;
        if (!nl) {
            break;
        }
        p = nl + 1;
    }
    buf[o++] = '\n';
    struct {
        const char *data;
        size_t len;
    } ev = {buf, o};
    ot_err err = OT_OK;
    pthread_mutex_lock(&st->mu);
    if (st->closed || st->ending) {
        err = OT_E_CLOSED;
    } else if (st->overflow || st->pend.len + ev.len > st->cap) {
        st->overflow = true; /* the loop drops it */
        net_stream_kick(st);
        err = OT_E_LIMIT;
    } else if (st->idle && st->direct_fd >= 0 && st->pend.len == 0
               && atomic_fetch_sub(&st->io->direct_budget, 1) > 0) {
        /* Nothing queued: write now, no thread hop. What the socket does
         * not take goes through the loop (an error shows there too). */
        ssize_t w = send(st->direct_fd, ev.data, ev.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        size_t done = w > 0 ? (size_t)w : 0;
        if (done < ev.len) {
            st->idle = false;
            if (ot_buf_append(&st->pend, ev.data + done, ev.len - done) != OT_OK) {
                st->overflow = true;
            }
            net_stream_kick(st);
        }
    } else if (ot_buf_append(&st->pend, ev.data, ev.len) != OT_OK) {
        err = OT_E_NOMEM;
    } else {
        net_stream_kick(st);
    }
    pthread_mutex_unlock(&st->mu);
    if (buf != small) {
        free(buf);
    }
    return err;
}

ot_err net_stream_answer(struct net_stream *st, int status, const char *content_type,
                         const void *body, size_t len)
{
    return net_stream_answer_hdrs(st, status, content_type, NULL, body, len);
}

ot_err net_stream_answer_hdrs(struct net_stream *st, int status, const char *content_type,
                              const char *const *hdrs, const void *body, size_t len)
{
    if (!st || st->sse) {
        return OT_E_STATE;
    }
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "X-Request-Id: %s\r\nCache-Control: no-store\r\nConnection: close\r\n",
                     status, http_err_reason(status),
                     content_type ? content_type : "application/json", len, st->request_id);
    if (n < 0 || (size_t)n >= sizeof head || (content_type && strpbrk(content_type, "\r\n"))) {
        return OT_E_ARG;
    }
    size_t extra = 2;
    for (size_t i = 0; hdrs && hdrs[i]; i++) {
        if (strpbrk(hdrs[i], "\r\n") || !strchr(hdrs[i], ':')) {
            return OT_E_ARG;
        }
        extra += strlen(hdrs[i]) + 2;
    }
    ot_err err = OT_OK;
    pthread_mutex_lock(&st->mu);
    if (st->closed) {
        err = OT_E_CLOSED;
    } else if (st->answered || st->ending) {
        err = OT_E_STATE;
    } else {
        struct ot_buf b;
        ot_buf_init(&b, (size_t)n + extra + len + 1);
        err = ot_buf_append(&b, head, (size_t)n);
        for (size_t i = 0; err == OT_OK && hdrs && hdrs[i]; i++) {
            err = ot_buf_append(&b, hdrs[i], strlen(hdrs[i]));
            if (err == OT_OK) {
                err = ot_buf_append(&b, "\r\n", 2);
            }
        }
        if (err == OT_OK) {
            err = ot_buf_append(&b, "\r\n", 2);
        }
        if (err == OT_OK && len > 0) {
            err = ot_buf_append(&b, body, len);
        }
        if (err == OT_OK) {
            ot_buf_free(&st->pend);
            st->pend = b;
            st->answered = true;
            st->ending = true;
            net_stream_kick(st);
        } else {
            ot_buf_free(&b);
        }
    }
    pthread_mutex_unlock(&st->mu);
    return err;
}

void net_stream_close(struct net_stream *st)
{
    if (!st) {
        return;
    }
    pthread_mutex_lock(&st->mu);
    if (!st->closed && !st->ending) {
        st->ending = true;
        st->idle = false;
        net_stream_kick(st);
    }
    pthread_mutex_unlock(&st->mu);
}

unsigned net_server_streams(const struct net_server *srv)
{
    return (unsigned)atomic_load(&srv->streams_open);
}

/* The loop side: moves what was pushed into the connection's output and
 * writes; ends the stream when asked, answered or over the cap. */
static void net_stream_pump(struct net_conn *c)
{
    struct net_stream *st = c->stream;
    bool drop = false, ending = false;
    pthread_mutex_lock(&st->mu);
    if (st->pend.len > 0) {
        st->idle = false;
        if (c->out.len - c->out_off == 0) {
            ot_buf_free(&c->out);
            c->out = st->pend; /* hand the buffer over, no copy */
            c->out_off = 0;
            ot_buf_init(&st->pend, st->cap + 1024);
        } else if (c->out.len - c->out_off + st->pend.len > st->cap + 1024
                   || ot_buf_append(&c->out, st->pend.data, st->pend.len) != OT_OK) {
            drop = true;
        } else {
            ot_buf_free(&st->pend);
            ot_buf_init(&st->pend, st->cap + 1024);
        }
    }
    drop = drop || st->overflow;
    ending = st->ending;
    pthread_mutex_unlock(&st->mu);
    if (drop) {
        OT_LOG_INFO("req_id=%s ip=%s stream dropped: client does not read", st->request_id, c->ip);
        net_conn_kill(c);
        return;
    }
    c->stream_ending = ending;
    net_conn_flush(c);
}

/* The handler returned a stream: its head is in c->out (SSE). */
static void net_stream_begin(struct net_conn *c)
{
    struct net_io *io = c->io;
    struct net_stream *st = c->req->resp.stream;
    c->stream = st;
    c->req->resp.stream = NULL;
    net_req_free(c->req);
    c->req = NULL;
    free(c->in);
    c->in = NULL;
    c->in_len = 0;
    if (c->counted) {
        c->counted = false;
        net_inflight(io->srv, -1);
    }
    atomic_fetch_add(&io->srv->streams_open, 1);
    unsigned hb = io->srv->cfg.sse_heartbeat_s;
    int one = 1, idle = (int)hb, intvl = (int)(hb < 10 ? hb : 10), cnt = 3;
    unsigned uto = hb * 3 * 1000;
    (void)setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof uto);
    /* A fixed kernel send buffer: a client that does not read costs at most
     * this plus the stream's own cap, then it is dropped. */
    int sndbuf = (int)(st->cap < 16384 ? 16384 : st->cap);
    (void)setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    c->state = C_STREAM;
    c->deadline = st->sse ? net_mono() + hb : st->expires;
    pthread_mutex_lock(&st->mu);
    st->conn = c;
    st->direct_fd = (st->sse && !c->ssl) ? c->fd : -1;
    st->idle = false; /* the head is being written */
    pthread_mutex_unlock(&st->mu);
    net_conn_events(c, EPOLLIN);
    net_stream_pump(c);
}

static void net_stream_event(struct net_conn *c, uint32_t ev)
{
    if (ev & EPOLLIN) {
        /* A stream client has nothing to say: read and drop; EOF ends it. */
        for (;;) {
            bool eof = false;
            size_t n = net_conn_recv(c, c->io->scratch, sizeof c->io->scratch, &eof);
            if (eof) {
                net_conn_kill(c);
                return;
            }
            if (n == 0) {
                break;
            }
        }
    }
    if (ev & (EPOLLHUP | EPOLLERR)) {
        net_conn_kill(c);
        return;
    }
    if (ev & EPOLLOUT) {
        net_conn_flush(c);
    }
}

static void net_stream_tick(struct net_conn *c, double now)
{
    struct net_stream *st = c->stream;
    if (now < c->deadline) {
        return;
    }
    if (!st->sse) {
        /* No answer in time: the timeout answer. */
        char a[256];
        int n = snprintf(a, sizeof a,
                         "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nX-Request-Id: %s\r\n"
                         "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                         st->timeout_status, http_err_reason(st->timeout_status), st->request_id);
        pthread_mutex_lock(&st->mu);
        bool answered = st->answered;
        st->answered = true;
        st->ending = true;
        pthread_mutex_unlock(&st->mu);
        if (answered) {
            c->deadline = now + c->io->srv->cfg.timeout_s; /* being written */
            if (c->out.len > c->out_off) {
                return;
            }
            net_conn_kill(c);
            return;
        }
        if (n < 0 || (size_t)n >= sizeof a || ot_buf_append(&c->out, a, (size_t)n) != OT_OK) {
            net_conn_kill(c);
            return;
        }
        c->stream_ending = true;
        c->deadline = now + c->io->srv->cfg.timeout_s;
        net_conn_flush(c);
        return;
    }
    static const char hb[] = ":\n\n";
    c->deadline = now + c->io->srv->cfg.sse_heartbeat_s;
    pthread_mutex_lock(&st->mu);
    st->idle = false; /* the loop writes now */
    pthread_mutex_unlock(&st->mu);
    if (c->out.len - c->out_off + sizeof hb > c->stream->cap + 1024
        || ot_buf_append(&c->out, hb, sizeof hb - 1) != OT_OK) {
        net_conn_kill(c);
        return;
    }
    net_conn_flush(c);
}

/* Streams queued by pushes from any thread. */
static void net_stream_drain(struct net_io *io)
{
    pthread_mutex_lock(&io->sq_mu);
    struct net_stream *st = io->sq_head;
    io->sq_head = io->sq_tail = NULL;
    for (struct net_stream *x = st; x; x = x->wnext) {
        x->queued = false;
    }
    pthread_mutex_unlock(&io->sq_mu);
    while (st) {
        struct net_stream *next = st->wnext;
        struct net_conn *c = st->conn;
        if (c && c->state == C_STREAM) {
            net_stream_pump(c);
            if (c->kill) {
                net_conn_close(c);
            }
        }
        net_stream_unref(st);
        st = next;
    }
}

/* The connection of st closes: tell the owner. */
static void net_stream_end(struct net_conn *c)
{
    struct net_stream *st = c->stream;
    c->stream = NULL;
    pthread_mutex_lock(&st->mu);
    st->closed = true;
    st->conn = NULL;
    st->direct_fd = -1;
    st->idle = false;
    pthread_mutex_unlock(&st->mu);
    if (st->on_close) {
        st->on_close(st->ctx, st);
    }
    net_stream_unref(st);
}
