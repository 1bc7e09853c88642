/* Private to src/net: the server's internals shared by http.c (requests,
 * routing, the per-request pipeline) and http_io.c (the event loop,
 * connections, TLS, the worker pool), rate limiting and metrics. */
#ifndef OT_NET_NET_PRIV_H
#define OT_NET_NET_PRIV_H

#include "core/buf.h"
#include "core/err.h"
#include "net/http.h"
#include "net/http_parse.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define NET_MAX_SEGS       32
#define NET_PARAM_NAME_MAX 32
#define NET_RESP_HEADERS   8
#define NET_BUILTINS       3
#define NET_IDEM_BUSY      1024 /* idempotent requests handled at the same time */

struct net_seg {
    const char *lit; /* literal text (not NUL-terminated at len), or NULL for {param} */
    size_t len;
    char name[NET_PARAM_NAME_MAX]; /* param name */
};

struct net_rt {
    const struct net_route *r;
    void *ctx;
    struct net_seg seg[NET_MAX_SEGS];
    size_t nseg;
    size_t nlit;
    size_t metrics_idx;
};

#define NET_MAX_PROXIES 32 /* cfg.trusted_proxies entries */

struct net_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned bits;
};

struct net_io; /* http_io.c: loop, connections, workers */
struct net_conn;

struct net_server {
    struct net_server_cfg cfg; /* strings below are our copies */
    char *host;
    char session_cookie[33]; /* cfg.session_cookie copied; "" = none */
    char *tls_cert;          /* file names */
    char *tls_key;
    char *client_ca;
    struct net_rt rt[NET_MAX_ROUTES + NET_BUILTINS];
    size_t nrt;
    size_t metrics_unmatched; /* metrics slot for requests that match no route */
    struct net_metrics *metrics;
    struct net_rl *rl_principal;
    struct net_rl *rl_authfail;
    struct net_rl *rl_credfail;
    struct net_cidr proxies[NET_MAX_PROXIES];
    size_t nproxies;
    struct ssl_ctx_st *ssl_ctx; /* NULL: plain HTTP */
    struct net_io *io;          /* NULL before start and after stop */
    uint16_t port;
    atomic_bool stopping;
    atomic_uint_fast64_t req_seq;
    char id_prefix[9];
    pthread_mutex_t mu; /* in_flight */
    pthread_cond_t cv;
    unsigned in_flight;
    /* (principal, Idempotency-Key) pairs being handled now: a second request
     * with the same pair waits for no one, it gets 409 (see net_idem_claim). */
    pthread_mutex_t idem_mu;
    uint64_t idem_busy[NET_IDEM_BUSY];
    atomic_uint_fast64_t auth_failures;
    atomic_uint_fast64_t conns_open;
    atomic_uint streams_open;
};

struct net_hdr {
    char *name;
    char *value;
};

struct net_resp {
    int status;
    bool set;
    char *body;
    size_t len;
    char ctype[64];
    char error_code[64]; /* error slug, for the audit; "" if none */
    struct net_hdr hdr[NET_RESP_HEADERS];
    size_t nhdr;
    struct net_stream *stream; /* the handler opened a stream (SSE / long-poll) */
};

struct net_qarg {
    const char *key; /* decoded, NUL-terminated */
    const char *value;
    size_t klen, vlen;
    bool has_eq; /* "k=" or "k=v" (not a bare "k") */
};

struct net_req {
    struct net_server *srv;
    struct net_conn *conn;
    char *head; /* the header section, parsed in place (h points into it) */
    struct net_http_head h;
    const char *method;
    char *url;               /* the raw path (without the query), NUL-terminated */
    char *dpath;             /* the path percent-decoded (request hash) */
    const struct net_rt *rt; /* NULL: no route */
    char *pbuf;              /* decoded param values */
    const char *param_name[NET_MAX_PARAMS];
    const char *param_val[NET_MAX_PARAMS];
    size_t nparam;
    char *qbuf; /* decoded query arguments */
    struct net_qarg q[NET_HTTP_MAX_QUERY];
    size_t nq;
    bool is_head; /* HEAD served by a GET route: no body */
    char request_id[NET_REQUEST_ID_MAX + 3];
    char client_ip[INET6_ADDRSTRLEN];
    char peer_ip[INET6_ADDRSTRLEN]; /* the socket peer (a proxy's when forwarded) */
    char subject[512];              /* verified client certificate subject, "" if none */
    bool authenticated;
    struct net_principal principal;
    const char *token;   /* the bearer or session token that authenticated, NULL if none */
    char cookie_tok[96]; /* the session cookie's value, when it is the credential */
    char idem_key[NET_IDEM_KEY_MAX + 1];
    uint8_t idem_hash[32]; /* request hash, set before the handler runs (idempotent routes) */
    bool idem_ready;       /* idem_key and idem_hash are set */
    bool idem_stored;      /* the handler stored its answer itself (net_req_idem_stored) */
    bool change_audited;   /* its change committed with its audit row (net_req_change_audited) */
    struct ot_buf body;
    bool too_large;
    bool close; /* close the connection after the answer */
    double t0;  /* net_mono() at the request's start */
    struct net_resp resp;
};

/* http.c: runs the pipeline of http.h on a complete request (worker
 * thread) and leaves the answer in req->resp. */
void net_process(struct net_req *req);
/* Serialises req->resp (status line, headers, body unless HEAD) into out.
 * stream_head: only the head of an open stream (no Content-Length). */
ot_err net_resp_serialize(struct net_req *req, struct ot_buf *out);
/* Logs, counts and audits the outcome of req (after net_process). */
void net_finish(struct net_req *req);
void net_req_free(struct net_req *req);
/* A JSON error body for answers made outside the pipeline (framing
 * errors): "HTTP/1.1 <status> ...\r\n" with Connection: close. */
ot_err net_plain_error(struct ot_buf *out, int status, const char *code, const char *msg);
void net_inflight(struct net_server *srv, int delta);
/* Monotonic clock in seconds (deadlines, rate windows, latencies). */
double net_mono(void);

/* http_io.c */
/* Loads the certificate, key and client CA of cfg into srv->ssl_ctx.
 * OT_E_IO: a file is unreadable or does not match. */
ot_err net_tls_new(struct net_server *srv, const struct net_server_cfg *cfg);
ot_err net_io_start(struct net_server *srv);
void net_io_stop(struct net_server *srv, unsigned grace_ms);

/* Bounded keyed counters (sharded, each shard under its own mutex). When a
 * shard is full the stalest of the probed entries is replaced, so memory stays
 * fixed whatever the number of keys (client IPs are attacker-controlled). */
struct net_rl;
ot_err net_rl_new(struct net_rl **out);
void net_rl_free(struct net_rl *rl);
/* Token bucket: takes one token for key at time now_s. false: empty bucket and
 * *retry_after_s = seconds until one token is back (>= 1). */
bool net_rl_take(struct net_rl *rl, uint64_t key, double rate_per_s, double burst, double now_s,
                 unsigned *retry_after_s);
/* Fixed window counter: number of events recorded for key in the current
 * window (without recording); *retry_after_s = seconds to the window's end. */
unsigned net_rl_window_count(struct net_rl *rl, uint64_t key, double window_s, double now_s,
                             unsigned *retry_after_s);
/* Records one event for key in its current window. */
void net_rl_window_add(struct net_rl *rl, uint64_t key, double window_s, double now_s);
/* 64-bit FNV-1a of a string, for keys. */
uint64_t net_rl_hash(const char *s);

/* HTTP metrics: per route request counters by status and a latency histogram. */
ot_err net_metrics_new(struct net_metrics **out);
void net_metrics_free(struct net_metrics *m);
/* A route label (pattern) and method; returns its index via *idx. */
ot_err net_metrics_add_route(struct net_metrics *m, const char *method, const char *route,
                             size_t *idx);
/* Records one request: route idx, status, seconds. Thread-safe. */
void net_metrics_observe(struct net_metrics *m, size_t idx, int status, double seconds);
/* Appends the Prometheus text exposition (format 0.0.4) to out. Thread-safe. */
ot_err net_metrics_render(struct net_metrics *m, struct ot_buf *out);

#endif
