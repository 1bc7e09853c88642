/* HTTP server for the services hosted by tsmd: our own HTTP/1.1 server (an
 * epoll loop for I/O, a worker pool for handlers, OpenSSL 3 for TLS and
 * client certificates; docs/internals/http.md), a router with {param} segments,
 * authentication through a callback, per-principal rate limits, Idempotency-Key
 * replays, request ids, body caps, /healthz, /readyz and /metrics.
 *
 * Threading: net_server_new/add_routes/start/stop/free are called from one
 * thread (the program's main). Handlers run on the server's worker threads,
 * several at a time; a handler's ctx and the ops callbacks must be thread-safe.
 * A struct net_req / net_resp belongs to one request and one thread and is valid
 * only during the handler call.
 *
 * Per request, in this order: request id; route lookup (404 unknown path, 405
 * known path with another method, with Allow); body cap (413); for routes with
 * allow != 0: authentication (401 + WWW-Authenticate: Bearer; failed attempts
 * per client IP are counted and answered 429 after a threshold), principal kind
 * (403), rate limit (429 + Retry-After); Idempotency-Key (400 missing or
 * invalid, replay of the stored answer, 422 for another body); the handler.
 * Every outcome of a request to a route with allow != 0 is reported to
 * ops.audit, including 401/403/404 and handler errors.
 *
 * Idempotency: the key is scoped to the principal; the request hash is
 * SHA-256 over the method, the path, the query arguments as received (in
 * their order, each name and value as decoded; "a" and "a=" differ) and the
 * body, in an unambiguous encoding (net_req_hash in http.c). A replay with
 * the same key and body but other query arguments is a different request:
 * 422 like another body. The handler's answer is stored through
 * ops.idem_put only when it is a success (2xx): a rejected request changes
 * nothing, not even the idempotency store, and its retry is validated (and
 * rejected) again. A second request with a key whose first request is still
 * running gets 409 "conflict".
 *
 * That store comes after the handler's commit, so a crash in between makes
 * the retry run the handler again. A handler whose change is one database
 * transaction closes the gap by storing its answer itself, in that
 * transaction (net_req_idem gives it the key and the request hash), and
 * saying so (net_req_idem_stored): the server then skips ops.idem_put.
 *
 * Logging: the server logs one line per request (INFO) with req_id=...;
 * handlers put req_id=%s (net_req_request_id) in each line they log.
 */
#ifndef OT_NET_HTTP_H
#define OT_NET_HTTP_H

#include "core/err.h"
#include "net/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Principal kinds, a bitmask in struct net_route.allow. */
#define NET_P_OPERATOR   0x1u
#define NET_P_SP         0x2u /* service provider */
#define NET_P_SUBSCRIBER 0x4u
#define NET_P_DEVICE     0x8u
#define NET_P_ANY        (NET_P_OPERATOR | NET_P_SP | NET_P_SUBSCRIBER | NET_P_DEVICE)

/* Named caps (STYLE.md 5). */
#define NET_MAX_BODY_DEFAULT ((size_t)1024 * 1024) /* request body, bytes */
#define NET_MAX_ROUTES       256
#define NET_MAX_PARAMS       8 /* {param} segments per pattern */
#define NET_MAX_PATH         1024
#define NET_REQUEST_ID_MAX   64  /* incoming X-Request-Id: 1..64 of [A-Za-z0-9._-] */
#define NET_IDEM_KEY_MAX     128 /* Idempotency-Key: 1..128 printable ASCII, no space */
#define NET_MAX_RESP_BODY    ((size_t)64 * 1024 * 1024)

struct net_principal {
    unsigned kind; /* exactly one NET_P_* bit */
    int64_t id;    /* the principal's row id in the auth store */
    char name[64]; /* NUL-terminated, for logs and audit */
};

struct net_req;
struct net_resp;
struct net_server;

/* A handler always answers through resp (net_resp_json / net_resp_error /
 * net_resp_text); if it sets nothing the client gets 500. */
typedef void (*net_handler_fn)(struct net_req *req, struct net_resp *resp, void *ctx);

struct net_route {
    const char *method;  /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *pattern; /* "/tsm/v1/secure-elements/{id}": literal or {name} segments */
    unsigned allow;      /* NET_P_* kinds allowed; 0 = public (no authentication) */
    bool idempotent;     /* state-changing POST: requires Idempotency-Key */
    net_handler_fn fn;
    /* Query argument names the route accepts, NULL-terminated; NULL = none.
     * The server answers 400 (field = the argument) for an unknown or
     * repeated one before the handler runs, so handlers never check. */
    const char *const *query;
};

/* One audited outcome. Strings are valid during the callback only. */
struct net_audit_event {
    const struct net_principal *principal; /* NULL when authentication failed */
    const char *method;
    const char *route;      /* the matched pattern, or the raw path when none matched */
    const char *path;       /* the request path, percent-decoded: untrusted text, no NUL */
    int status;             /* HTTP status sent */
    const char *error_code; /* error slug when status >= 400, else NULL */
    const char *request_id;
    const char *client_ip;
    bool change_audited; /* net_req_change_audited was called */
};

/* Callbacks the program plugs in (net does not link db). Each is optional
 * unless stated; all are called from worker threads concurrently. */
struct net_server_ops {
    /* Required when any route has allow != 0. bearer_token: the token after
     * "Bearer ", NULL if none; client_cert_subject: the verified client
     * certificate's subject DN (RFC 4514 string), NULL without mTLS. Fill *out
     * and return OT_OK, or return OT_E_AUTH; OT_E_DB / OT_E_TIMEOUT answer
     * 503, anything else 500. */
    ot_err (*authenticate)(void *ctx, const char *bearer_token, const char *client_cert_subject,
                           struct net_principal *out);
    /* Look up (principal, key). OT_OK: *status, stored request hash and
     * *body (malloc'd, freed by net with free(); may be NULL when body_len is
     * 0) are set. OT_E_NOT_FOUND: no record. Other errors answer 503/500. */
    ot_err (*idem_get)(void *ctx, const struct net_principal *p, const char *key,
                       uint8_t req_hash[32], int *status, char **body, size_t *body_len);
    /* Store the first answer to (principal, key), after the handler returned
     * (not called when the handler stored it: net_req_idem_stored).
     * OT_E_CONFLICT (a concurrent first request stored one already) is
     * ignored. */
    ot_err (*idem_put)(void *ctx, const struct net_principal *p, const char *key,
                       const uint8_t req_hash[32], int status, const char *body, size_t body_len);
    /* Every outcome on an authenticated route (see the file comment). */
    void (*audit)(void *ctx, const struct net_audit_event *ev);
    /* /readyz: true = 200 "ready", false = 503. NULL: always ready. */
    bool (*ready)(void *ctx);
};

/* Who may read /metrics (cfg.metrics). */
enum net_metrics_access {
    NET_METRICS_OPERATOR = 0, /* operator credentials (the default; off without ops.authenticate) */
    NET_METRICS_PUBLIC,       /* anyone who reaches the listener */
    NET_METRICS_OFF,          /* not served (404) */
};

/* The CSRF token of a browser session whose cookie holds token: base64url
 * (no padding) of SHA-256("opentsm-csrf\0" || token), 43 characters. A page
 * learns it from the sign-in answer; a cross-site attacker, who cannot read
 * the HttpOnly cookie, cannot compute it. out: at least NET_CSRF_LEN + 1. */
#define NET_CSRF_LEN 43
ot_err net_csrf_token(const char *token, char *out, size_t cap);

struct net_server_cfg {
    const char *host;      /* listen address, e.g. "127.0.0.1" or "::1"; NULL = 127.0.0.1 */
    uint16_t port;         /* 0 = ephemeral (see net_server_port) */
    const char *tls_cert;  /* PEM certificate chain file; NULL = plain HTTP */
    const char *tls_key;   /* PEM private key file (required with tls_cert) */
    const char *client_ca; /* PEM CA file: request and verify client certificates (mTLS) */
    unsigned threads;      /* worker threads; 0 = 4 */
    size_t max_body;       /* request body cap (413 above); 0 = NET_MAX_BODY_DEFAULT */
    /* Connection deadlines, each a total time (not an idle time): TLS
     * handshake plus the request's header section from the connection's
     * start, a request's head and body from its first byte, an idle
     * keep-alive connection, an answer's write. 0 = 30. */
    unsigned timeout_s;
    unsigned max_conns;        /* concurrent connections; 0 = RLIMIT_NOFILE minus a reserve */
    unsigned max_conns_per_ip; /* concurrent connections per client IP; 0 = 256 */
    /* Addresses or CIDR blocks of reverse proxies ("10.0.0.1, fd00::/8"),
     * commas or blanks between; from them X-Forwarded-For's last untrusted
     * hop is the client IP (rate limits, lockout, audit). NULL = none. */
    const char *trusted_proxies;
    enum net_metrics_access metrics; /* /metrics; default operator-only */
    unsigned sse_heartbeat_s;        /* SSE heartbeat comment interval; 0 = 15 */
    size_t stream_buf_max;           /* per-stream unsent bytes before a drop; 0 = 64 KiB */
    double rate_per_s;               /* per-principal token bucket refill; 0 = no limit */
    unsigned rate_burst;             /* bucket size; 0 = max(1, rate_per_s) */
    unsigned auth_fail_max;      /* failed authentications per IP per window before 429; 0 = 10 */
    unsigned auth_fail_window_s; /* 0 = 60 */
    /* Browser sessions (the web console): the name of a cookie whose value
     * is a token, taken as the credential when the request has neither a
     * bearer token nor a client certificate. A request so authenticated
     * that changes state (any method but GET and HEAD) must carry the
     * header X-CSRF-Token = net_csrf_token(the cookie's value), else 403
     * "csrf". NULL: cookies are ignored. */
    const char *session_cookie;
    struct net_server_ops ops;
    void *ops_ctx;
};

/* Copies cfg (strings too) and reads the TLS files; does not listen yet.
 * Errors: OT_E_ARG (bad cfg), OT_E_IO (unreadable TLS file), OT_E_NOMEM. */
ot_err net_server_new(const struct net_server_cfg *cfg, struct net_server **out);
/* routes must stay valid for the server's life (static const tables); ctx is
 * passed to their handlers. Before net_server_start only. Errors: OT_E_ARG (bad
 * pattern, duplicate method+pattern), OT_E_LIMIT (NET_MAX_ROUTES). */
ot_err net_server_add_routes(struct net_server *srv, const struct net_route *routes, size_t n,
                             void *ctx);
/* Starts listening and serving. OT_E_IO: cannot bind. */
ot_err net_server_start(struct net_server *srv);
/* The bound port (useful with cfg.port = 0); 0 before start. */
uint16_t net_server_port(const struct net_server *srv);
/* Stops accepting new connections, waits up to grace_ms for in-flight
 * requests to finish, then closes every connection (open streams end, their
 * on_close is called) and stops the threads. */
void net_server_stop(struct net_server *srv, unsigned grace_ms);
/* NULL-safe; stops first if still running. */
void net_server_free(struct net_server *srv);
/* Calls fn for every registered route, built-ins (/healthz, /readyz, /metrics)
 * included, in registration order. */
void net_server_foreach_route(const struct net_server *srv,
                              void (*fn)(void *ctx, const struct net_route *r), void *ctx);
/* The server's metric registry (owned by the server). */
struct net_metrics *net_server_metrics(struct net_server *srv);

/* Program metrics exported on /metrics next to the HTTP ones. fn is called on
 * every scrape, from a worker thread. name: [a-z_][a-z0-9_]*, help: one line.
 * Before net_server_start only. Errors: OT_E_ARG, OT_E_LIMIT (64 metrics). */
enum net_metric_type {
    NET_METRIC_GAUGE,
    NET_METRIC_COUNTER,
};
ot_err net_metrics_register(struct net_metrics *m, const char *name, const char *help,
                            enum net_metric_type type, double (*fn)(void *ctx), void *ctx);

/* Request accessors: the returned strings live as long as the request. */
const char *net_req_method(const struct net_req *req);
/* The path without the query string, percent-decoded (any byte but NUL:
 * untrusted text). Routing used the raw form (docs/internals/http.md). */
const char *net_req_path(const struct net_req *req);
const char *net_req_route(const struct net_req *req); /* the matched pattern */
/* Value of {name} in the pattern, URL-decoded; NULL if the pattern has none. */
const char *net_req_param(const struct net_req *req, const char *name);
/* Query argument, URL-decoded; NULL if absent. */
const char *net_req_query(const struct net_req *req, const char *name);
/* Calls fn for every query argument; used to reject unknown ones. */
void net_req_foreach_query(const struct net_req *req,
                           void (*fn)(void *ctx, const char *key, const char *value), void *ctx);
/* Query arguments not in allowed (NULL-terminated) -> OT_E_FORMAT with
 * err->field naming the first unknown one; a repeated argument too. */
ot_err net_req_check_query(const struct net_req *req, const char *const *allowed,
                           struct json_err *err);
const char *net_req_header(const struct net_req *req, const char *name); /* case-insensitive */
const uint8_t *net_req_body(const struct net_req *req, size_t *len);     /* never NULL */
/* NULL on public routes. */
const struct net_principal *net_req_principal(const struct net_req *req);
/* The token that authenticated the request (from "Authorization: Bearer"
 * or the session cookie), valid during the handler; NULL for a client
 * certificate or an unauthenticated request. */
const char *net_req_token(const struct net_req *req);
/* The verified client certificate's subject DN (RFC 4514) when it is what
 * authenticated the request (no token was sent); NULL otherwise. */
const char *net_req_cert_subject(const struct net_req *req);
/* true when the request was authenticated by the session cookie. */
bool net_req_via_cookie(const struct net_req *req);
const char *net_req_request_id(const struct net_req *req);
const char *net_req_client_ip(const struct net_req *req);
/* On a route with idempotent = true: true, *key = the request's
 * Idempotency-Key and *req_hash = the 32-byte request hash the replay check
 * compares (both live as long as the request). Elsewhere false, both NULL.
 * For handlers that store their answer for replays themselves, in the
 * transaction of their change, under the scope the program's ops.idem_get
 * reads (tsmd: the principal's id), with exactly the status and body they
 * answer (replays are sent as application/json, without extra headers). */
bool net_req_idem(const struct net_req *req, const char **key, const uint8_t **req_hash);
/* The handler stored its 2xx answer that way and its transaction committed:
 * the server does not call ops.idem_put for this request. Call it only
 * after the commit (a rolled-back record must not stop the server's own
 * store); no-op on other routes. */
void net_req_idem_stored(struct net_req *req);
/* The handler's change committed with the request's own audit row (action,
 * resource, principal, request id): ops.audit gets ev->change_audited, and
 * the program need not write a second row for the request's success.
 * Call it only after the commit. */
void net_req_change_audited(struct net_req *req);
/* Strict parse of the body (duplicates rejected, size capped by max_body).
 * *out: new reference, release with json_free. Errors: OT_E_FORMAT + err. */
ot_err net_req_json(const struct net_req *req, json_t **out, struct json_err *err);

/* Responses. The last call wins. */
/* body: stolen (released even on failure); NULL = empty body. */
void net_resp_json(struct net_resp *resp, int status, json_t *body);
/* {"error":{"code":"...","message":"...","field":"..."}} with the status of
 * http_err_status(e). code NULL: http_err_slug(e); message NULL: ot_strerror(e);
 * field NULL: no "field" member. */
void net_resp_error(struct net_resp *resp, ot_err e, const char *code, const char *message,
                    const char *field);
/* The same from a json_err filled by the json_ helpers. */
void net_resp_json_error(struct net_resp *resp, ot_err e, const struct json_err *jerr);
void net_resp_text(struct net_resp *resp, int status, const char *content_type, const char *text);
void net_resp_bytes(struct net_resp *resp, int status, const char *content_type, const void *data,
                    size_t len);
/* Extra response header (e.g. Location); up to 8 per response. */
void net_resp_header(struct net_resp *resp, const char *name, const char *value);

/* ---- Streams: Server-Sent Events and deferred answers (long-poll) ----
 *
 * A handler can turn its answer into an open stream instead of a whole
 * body. No thread is held per stream: the connection goes back to the
 * server's loop, and the program pushes to the stream from any thread. A
 * push is O(1): it appends to the stream's own buffer under the stream's
 * own lock and queues the stream for the loop (never a walk over streams).
 *
 * SSE (net_resp_sse): 200, text/event-stream. Events are written as
 * "id: ..\nevent: ..\ndata: ..\n\n"; a client that reconnects sends the
 * last id it saw in the Last-Event-ID header, which the handler reads with
 * net_req_header(req, "Last-Event-ID") and resumes from (it may push the
 * missed events before returning). Every cfg.sse_heartbeat_s the server
 * writes a comment line, and the socket has TCP keepalive and
 * TCP_USER_TIMEOUT set: a peer that vanished is found within about three
 * heartbeats. A stream whose unsent bytes would exceed cfg.stream_buf_max
 * (a client that does not read) is dropped at once: the push gets
 * OT_E_LIMIT, nobody waits.
 *
 * Deferred answer (net_resp_defer): the answer is given later, from any
 * thread, with net_stream_answer; if none came within timeout_ms the server
 * answers timeout_status with an empty body (204 or 200 "{}"-style
 * answers are the owner's choice of status). The connection closes after
 * the answer.
 *
 * Lifetime: the net_resp_* call returns the stream with one reference for
 * the owner. The stream ends when the peer goes, on a drop, on
 * net_stream_close, or when the server stops; then on_close(ctx, s) is
 * called once, from the server's loop thread (at net_server_stop, from the
 * stopping thread; it must not block: no
 * database work), and pushes get OT_E_CLOSED. The owner calls
 * net_stream_release exactly once when it no longer uses the stream
 * (usually in or after on_close); memory is freed when both sides let go.
 * The request is logged and audited when the handler returns (status 200),
 * like any other. */
struct net_stream;
typedef void (*net_stream_close_fn)(void *ctx, struct net_stream *s);

/* Makes the answer an SSE stream. NULL when out of memory (the answer is
 * then 503). */
struct net_stream *net_resp_sse(struct net_resp *resp, net_stream_close_fn on_close, void *ctx);
/* Makes the answer a deferred one (see above). timeout_ms 0 = 30000. */
struct net_stream *net_resp_defer(struct net_resp *resp, unsigned timeout_ms, int timeout_status,
                                  net_stream_close_fn on_close, void *ctx);
/* One SSE event. id and event may be NULL; neither may hold CR, LF or NUL
 * (OT_E_ARG); data is split at LF into data: lines (CR refused). Errors:
 * OT_E_CLOSED (ended), OT_E_LIMIT (over the buffer cap: the stream is
 * dropped; an event larger than the cap itself is refused, the stream kept),
 * OT_E_STATE (a deferred stream), OT_E_NOMEM. Any thread. */
ot_err net_stream_send(struct net_stream *s, const char *id, const char *event, const char *data);
/* The deferred answer: status, content type (NULL = application/json) and
 * body. Once; OT_E_STATE after the first or on an SSE stream, OT_E_CLOSED
 * when the stream ended (timed out, peer gone). Any thread. */
ot_err net_stream_answer(struct net_stream *s, int status, const char *content_type,
                         const void *body, size_t len);
/* The same with extra header lines ("Name: value", NULL-terminated list; a
 * line without ':' or with CR/LF: OT_E_ARG). */
ot_err net_stream_answer_hdrs(struct net_stream *s, int status, const char *content_type,
                              const char *const *hdrs, const void *body, size_t len);
/* Ends the stream after what is queued has been written. Any thread. */
void net_stream_close(struct net_stream *s);
/* The owner's reference; NULL-safe. Any thread. */
void net_stream_release(struct net_stream *s);
/* Streams open now on srv (for metrics and tests). */
unsigned net_server_streams(const struct net_server *srv);

#endif
