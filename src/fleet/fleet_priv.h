/* Internals shared by the files of src/fleet (never included from elsewhere). */
#ifndef OT_FLEET_FLEET_PRIV_H
#define OT_FLEET_FLEET_PRIV_H

#include "agent/conv.h"
#include "core/buf.h"
#include "core/err.h"
#include "net/sse.h"
#include "se/card.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- HTTP (fleet_http.c)
 *
 * One HTTP/1.1 connection driven by the loop's epoll: a request is written
 * (non-blocking), the answer read and parsed (status, headers, a
 * Content-Length body, or a text/event-stream fed to an SSE parser until the
 * server closes). Keep-alive: the next fh_send on the same connection reuses
 * it unless the server said Connection: close (then it reconnects). */

struct ssl_ctx_st;
struct ssl_st;

struct fh_loop {
    int ep;
    struct ssl_ctx_st *tls; /* NULL: plain HTTP; else every connection is TLS */
    char tls_ip[64];        /* the address the server's certificate must name */
    uint32_t dst_addr;      /* network order */
    uint16_t dst_port;      /* network order */
    char host[64];          /* Host header */
    unsigned open;          /* connections open now */
};

struct fh_conn;

/* A request ended: err OT_OK with c->status and the answer (fh_body,
 * fh_header) valid until the next fh_send / fh_close, or the transport's
 * error. For a stream: called once when the 200 arrives (OT_OK, c->streaming
 * set) and once when it ends (OT_E_CLOSED or the transport's error). */
typedef void (*fh_done_fn)(void *ctx, struct fh_conn *c, ot_err err);

struct fh_conn {
    struct fh_loop *loop;
    int fd;
    struct ssl_st *ssl; /* TLS (loop->tls) */
    uint32_t src;       /* source address, network order (0: any) */
    bool connecting;
    bool handshaking; /* TLS handshake in progress */
    bool busy;        /* a request is out and its answer not complete */
    bool must_close;  /* the server closes after this answer */
    bool streaming;   /* the answer is an SSE stream being fed to sse */
    bool reused;      /* the request went over a kept-alive connection */
    int status;
    struct ot_buf out;
    size_t out_off;
    struct ot_buf in;
    size_t hdr_end;         /* bytes of status line + headers (0: not all in) */
    size_t clen;            /* body length */
    struct net_sse_rx *sse; /* set by the caller before a stream request */
    fh_done_fn done;
    void *ctx;
};

/* ca_file non-NULL: TLS (HTTPS), the server's certificate verified
 * against it and required to name host (an IPv4 address). */
ot_err fh_loop_init(struct fh_loop *l, const char *host, uint16_t port, const char *ca_file);
void fh_loop_close(struct fh_loop *l);
/* Runs epoll once (up to timeout_ms) and dispatches. */
void fh_loop_poll(struct fh_loop *l, int timeout_ms);

/* A connection object (not connected yet); src_host_order 0: any source. */
void fh_conn_init(struct fh_conn *c, struct fh_loop *l, uint32_t src_host_order);
/* Sends method path with extra header lines (each "Name: value\r\n", may be
 * NULL), a bearer token (may be NULL) and body (ctype NULL: none). Connects
 * first when needed. done is called exactly once per fh_send for a plain
 * answer. */
ot_err fh_send(struct fh_conn *c, const char *method, const char *path, const char *token,
               const char *extra, const char *ctype, const void *body, size_t len, fh_done_fn done,
               void *ctx);
/* Closes the socket and frees the buffers (the object stays usable). */
void fh_close(struct fh_conn *c);
const uint8_t *fh_body(const struct fh_conn *c, size_t *len);
/* Copies header name's value (first one) into out; false when absent or too long. */
bool fh_header(const struct fh_conn *c, const char *name, char *out, size_t cap);

/* ---------------------------------------------------------------- card back end (fleet_card.c) */

/* A converter back end (agent/conv.h) over an in-memory card: connect powers
 * it on, disconnect powers it off (its command buffers given back), free
 * leaves the card to its owner. */
const struct agent_be_ops *fleet_card_be(void);

#endif
