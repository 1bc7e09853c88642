/* HTTP client over libcurl for calls between services and for tsmctl: JSON
 * requests and answers, bearer token, TLS verification against a CA file,
 * timeouts and a cap on the answer size.
 *
 * A struct net_client wraps one curl easy handle: use it from one thread at a
 * time (one client per thread). curl_global_init is done once by
 * net_client_new (thread-safe since libcurl 7.84).
 */
#ifndef OT_NET_CLIENT_H
#define OT_NET_CLIENT_H

#include "core/err.h"
#include "net/json.h"
#include "net/sse.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

struct net_client_cfg {
    const char *base_url;        /* "https://127.0.0.1:8443" (no trailing slash needed) */
    const char *token;           /* bearer token; NULL = none; copied and wiped at free */
    const char *ca_file;         /* PEM CA bundle for server verification; NULL = system */
    const char *client_cert;     /* PEM client certificate for mTLS; NULL = none */
    const char *client_key;      /* PEM key for client_cert */
    bool insecure;               /* skip TLS verification (tests only) */
    unsigned timeout_ms;         /* whole request; 0 = 30000 */
    unsigned connect_timeout_ms; /* 0 = 5000 */
    size_t max_body;             /* answer cap, OT_E_LIMIT above; 0 = 16 MiB */
    /* Non-NULL: once *cancel is non-zero (a signal handler's flag), a
     * request whose body has been sent stops waiting for its answer
     * (OT_E_STATE, checked about every second or sooner). */
    const volatile sig_atomic_t *cancel;
};

#define NET_CLIENT_HEADERS_MAX 8192

struct net_client_resp {
    long status; /* HTTP status */
    char *body;  /* NUL-terminated answer body (malloc'd), never NULL after OT_OK */
    size_t body_len;
    json_t *json;          /* parsed body when it is JSON, else NULL (owned) */
    char request_id[65];   /* X-Request-Id of the answer, "" if none */
    long retry_after;      /* Retry-After seconds, -1 if none */
    char error_code[64];   /* error.code of an error body, "" if none */
    char error_field[128]; /* error.field of an error body, "" if none */
    char error_message[160];
    char transport_error[256]; /* libcurl's text when no HTTP answer arrived, else "" */
    /* The final answer's header lines as received (cut at the cap), for
     * net_client_resp_header. */
    char headers[NET_CLIENT_HEADERS_MAX];
    size_t headers_len;
};

struct net_client;

ot_err net_client_new(const struct net_client_cfg *cfg, struct net_client **out);
void net_client_free(struct net_client *c); /* NULL-safe */

/* method + path ("/tsm/v1/..." appended to base_url, query included). body:
 * JSON sent with Content-Type: application/json, NULL = no body. headers:
 * extra "Name: value" lines, NULL-terminated list or NULL. OT_OK means an HTTP
 * answer arrived (any status); check out->status. Errors: OT_E_TIMEOUT,
 * OT_E_IO (connect/TLS failure), OT_E_LIMIT (answer over max_body),
 * OT_E_NOMEM. Release *out with net_client_resp_clear in every case. */
ot_err net_client_request(struct net_client *c, const char *method, const char *path,
                          const json_t *body, const char *const *headers,
                          struct net_client_resp *out);
/* The same with a raw body and its content type (CSV import, tests). */
ot_err net_client_request_raw(struct net_client *c, const char *method, const char *path,
                              const char *content_type, const void *body, size_t body_len,
                              const char *const *headers, struct net_client_resp *out);
void net_client_resp_clear(struct net_client_resp *r);
/* The value of the answer's header name (case-insensitive, trimmed, cut to
 * cap - 1) into out; false when the answer has no such header. */
bool net_client_resp_header(const struct net_client_resp *r, const char *name, char *out,
                            size_t cap);

/* ---- Server-Sent Events ---- */

struct net_sse_opts {
    unsigned retry_ms; /* wait before reconnecting; 0 = 1000 */
    /* Connections in a row that end without bringing an event before giving
     * up (0: give up when one ends so). */
    unsigned max_reconnects;
    unsigned
        idle_timeout_s; /* a stream silent this long (no event, no heartbeat) is dead; 0 = 60 */
};

/* GET path as an SSE stream (Accept: text/event-stream), calling fn for
 * each complete event, until fn returns false (OT_OK). When the connection
 * drops or goes silent, reconnects after retry_ms with Last-Event-ID = the
 * id of the last complete event (or last_event_id when none was seen yet),
 * so the server resumes after it; an event cut off by the drop is not
 * delivered (the server sends it again). opts NULL: defaults.
 * last_out (may be NULL): the last id seen, for a later resume. Errors:
 * OT_E_CLOSED / OT_E_TIMEOUT (gave up after max_reconnects), OT_E_AUTH,
 * OT_E_FORBIDDEN, OT_E_NOT_FOUND, OT_E_PROTOCOL (another status), OT_E_LIMIT
 * (an event over max_body), OT_E_ARG. Blocks the calling thread. */
ot_err net_client_sse(struct net_client *c, const char *path, const char *last_event_id,
                      const struct net_sse_opts *opts, net_sse_fn fn, void *ctx, char *last_out,
                      size_t last_cap);

#endif
