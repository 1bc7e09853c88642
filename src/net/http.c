/* HTTP server on libmicrohttpd. See http.h for the per-request pipeline.
 *
 * MHD calls the access handler at least twice per request: once when the
 * headers are in (we route, authenticate and check limits there, so nothing
 * of a rejected body is read), then once per body chunk, then once with no
 * data, when the handler runs. The per-request state (struct net_req) lives
 * in MHD's con_cls slot and is released in the completion callback.
 */
#include "net/http.h"

#define OT_LOG_COMPONENT "net.http"
#include "core/buf.h"
#include "core/log.h"
#include "net/http_err.h"
#include "net/net_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NET_MAX_SEGS        32
#define NET_PARAM_NAME_MAX  32
#define NET_RESP_HEADERS    8
#define NET_TLS_FILE_MAX    ((size_t)256 * 1024)
#define NET_CONN_MEMORY     ((size_t)16 * 1024) /* per connection: request line + headers */
#define NET_IDEM_KEY_HEADER "Idempotency-Key"
#define NET_BUILTINS        3
#define NET_IDEM_BUSY       1024                  /* idempotent requests handled at the same time */
#define NET_DRAIN_MAX       ((size_t)1024 * 1024) /* body bytes read and dropped after 413 */

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

struct net_server {
    struct net_server_cfg cfg; /* strings below are our copies */
    char *host;
    char *tls_cert;  /* PEM text */
    char *tls_key;   /* PEM text; wiped at free */
    char *client_ca; /* PEM text */
    size_t tls_key_len;
    struct net_rt rt[NET_MAX_ROUTES + NET_BUILTINS];
    size_t nrt;
    size_t metrics_unmatched; /* metrics slot for requests that match no route */
    struct net_metrics *metrics;
    struct net_rl *rl_principal;
    struct net_rl *rl_authfail;
    struct MHD_Daemon *d;
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
};

struct net_req {
    struct net_server *srv;
    struct MHD_Connection *conn;
    const char *method;
    const char *url;
    const struct net_rt *rt; /* NULL: no route */
    char path[NET_MAX_PATH]; /* split in place into the param values */
    const char *param_name[NET_MAX_PARAMS];
    const char *param_val[NET_MAX_PARAMS];
    size_t nparam;
    char request_id[NET_REQUEST_ID_MAX + 1];
    char client_ip[INET6_ADDRSTRLEN];
    bool authenticated;
    struct net_principal principal;
    char idem_key[NET_IDEM_KEY_MAX + 1];
    uint8_t idem_hash[32]; /* request hash, set before the handler runs (idempotent routes) */
    bool idem_ready;       /* idem_key and idem_hash are set */
    bool idem_stored;      /* the handler stored its answer itself (net_req_idem_stored) */
    struct ot_buf body;
    bool too_large;
    size_t discarded; /* body bytes dropped after too_large */
    bool answered;    /* a response was queued */
    bool counted;     /* in srv->in_flight */
    struct timespec t0;
    struct net_resp resp;
};

static double net_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void net_log_safe(char *dst, size_t cap, const char *s);

/* ---- responses ---- */

static void net_resp_reset_body(struct net_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
    resp->len = 0;
}

void net_resp_bytes(struct net_resp *resp, int status, const char *content_type, const void *data,
                    size_t len)
{
    net_resp_reset_body(resp);
    resp->status = status;
    resp->set = true;
    resp->error_code[0] = '\0';
    (void)snprintf(resp->ctype, sizeof resp->ctype, "%s",
                   content_type ? content_type : "application/octet-stream");
    if (len > 0) {
        resp->body = malloc(len);
        if (!resp->body) {
            resp->status = 503;
            return;
        }
        memcpy(resp->body, data, len);
        resp->len = len;
    }
}

void net_resp_text(struct net_resp *resp, int status, const char *content_type, const char *text)
{
    net_resp_bytes(resp, status, content_type ? content_type : "text/plain; charset=utf-8", text,
                   text ? strlen(text) : 0);
}

void net_resp_json(struct net_resp *resp, int status, json_t *body)
{
    net_resp_reset_body(resp);
    resp->status = status;
    resp->set = true;
    resp->error_code[0] = '\0';
    (void)snprintf(resp->ctype, sizeof resp->ctype, "application/json");
    if (body) {
        char *s = NULL;
        size_t n = 0;
        if (json_serialize(body, &s, &n) != OT_OK) {
            resp->status = 503;
        } else {
            resp->body = s;
            resp->len = n;
        }
        json_free(body);
    }
}

void net_resp_error(struct net_resp *resp, ot_err e, const char *code, const char *message,
                    const char *field)
{
    int status = http_err_status(e);
    const char *slug = code ? code : http_err_slug(e);
    json_t *root = json_obj_new();
    json_t *inner = json_obj_new();
    if (!root || !inner) {
        json_free(root);
        json_free(inner);
        net_resp_text(resp, 503, NULL, "out of memory\n");
        return;
    }
    ot_err err = json_put_str(inner, "code", slug);
    if (err == OT_OK) {
        err = json_put_str(inner, "message", message ? message : ot_strerror(e));
    }
    if (err == OT_OK && field && field[0] != '\0') {
        err = json_put_str(inner, "field", field);
    }
    if (err == OT_OK) {
        err = json_put(root, "error", inner);
        inner = NULL;
    }
    json_free(inner);
    if (err != OT_OK) {
        json_free(root);
        net_resp_text(resp, 503, NULL, "out of memory\n");
        return;
    }
    net_resp_json(resp, status, root);
    (void)snprintf(resp->error_code, sizeof resp->error_code, "%s", slug);
}

void net_resp_json_error(struct net_resp *resp, ot_err e, const struct json_err *jerr)
{
    net_resp_error(resp, e, NULL, jerr && jerr->message[0] ? jerr->message : NULL,
                   jerr ? jerr->field : NULL);
}

void net_resp_header(struct net_resp *resp, const char *name, const char *value)
{
    if (!name || !value || resp->nhdr >= NET_RESP_HEADERS) {
        return;
    }
    char *n = strdup(name);
    char *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return;
    }
    resp->hdr[resp->nhdr].name = n;
    resp->hdr[resp->nhdr].value = v;
    resp->nhdr++;
}

static void net_resp_clear(struct net_resp *resp)
{
    net_resp_reset_body(resp);
    for (size_t i = 0; i < resp->nhdr; i++) {
        free(resp->hdr[i].name);
        free(resp->hdr[i].value);
    }
    resp->nhdr = 0;
}

/* ---- request accessors ---- */

const char *net_req_method(const struct net_req *req)
{
    return req->method;
}

const char *net_req_path(const struct net_req *req)
{
    return req->url;
}

const char *net_req_route(const struct net_req *req)
{
    return req->rt ? req->rt->r->pattern : NULL;
}

const char *net_req_param(const struct net_req *req, const char *name)
{
    for (size_t i = 0; i < req->nparam; i++) {
        if (strcmp(req->param_name[i], name) == 0) {
            return req->param_val[i];
        }
    }
    return NULL;
}

const char *net_req_query(const struct net_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct net_query_iter {
    void (*fn)(void *ctx, const char *key, const char *value);
    void *ctx;
};

static enum MHD_Result net_query_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    struct net_query_iter *it = cls;
    it->fn(it->ctx, key, value ? value : "");
    return MHD_YES;
}

void net_req_foreach_query(const struct net_req *req,
                           void (*fn)(void *ctx, const char *key, const char *value), void *ctx)
{
    struct net_query_iter it = {fn, ctx};
    (void)MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, net_query_cb, &it);
}

struct net_query_check {
    const char *const *allowed;
    struct json_err *err;
    ot_err e;
    const char *seen[16];
    size_t nseen;
};

static enum MHD_Result net_query_check_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value)
{
    (void)kind;
    (void)value;
    struct net_query_check *qc = cls;
    if (qc->e != OT_OK) {
        return MHD_NO;
    }
    char name[64];
    net_log_safe(name, sizeof name, key);
    for (size_t i = 0; i < qc->nseen; i++) {
        if (strcmp(qc->seen[i], key) == 0) {
            qc->e = json_err_set(qc->err, OT_E_FORMAT, name, "repeated query argument");
            return MHD_NO;
        }
    }
    bool ok = false;
    for (size_t i = 0; qc->allowed && qc->allowed[i]; i++) {
        if (strcmp(key, qc->allowed[i]) == 0) {
            ok = true;
            break;
        }
    }
    if (!ok || qc->nseen >= sizeof qc->seen / sizeof qc->seen[0]) {
        qc->e = json_err_set(qc->err, OT_E_FORMAT, name, "unknown query argument");
        return MHD_NO;
    }
    qc->seen[qc->nseen++] = key;
    return MHD_YES;
}

ot_err net_req_check_query(const struct net_req *req, const char *const *allowed,
                           struct json_err *err)
{
    struct net_query_check qc = {allowed, err, OT_OK, {NULL}, 0};
    (void)MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, net_query_check_cb, &qc);
    return qc.e;
}

const char *net_req_header(const struct net_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const uint8_t *net_req_body(const struct net_req *req, size_t *len)
{
    static const uint8_t empty[1] = {0};
    *len = req->body.len;
    return req->body.data ? req->body.data : empty;
}

const struct net_principal *net_req_principal(const struct net_req *req)
{
    return req->authenticated ? &req->principal : NULL;
}

const char *net_req_request_id(const struct net_req *req)
{
    return req->request_id;
}

const char *net_req_client_ip(const struct net_req *req)
{
    return req->client_ip;
}

bool net_req_idem(const struct net_req *req, const char **key, const uint8_t **req_hash)
{
    if (!req->idem_ready) {
        *key = NULL;
        *req_hash = NULL;
        return false;
    }
    *key = req->idem_key;
    *req_hash = req->idem_hash;
    return true;
}

void net_req_idem_stored(struct net_req *req)
{
    if (req->idem_ready) {
        req->idem_stored = true;
    }
}

ot_err net_req_json(const struct net_req *req, json_t **out, struct json_err *err)
{
    size_t len;
    const uint8_t *b = net_req_body(req, &len);
    return json_parse(b, len, req->srv->cfg.max_body, out, err);
}

/* ---- server setup ---- */

static ot_err net_read_file(const char *path, char **out, size_t *len)
{
    ot_err err = OT_OK;
    *out = NULL;
    FILE *f = fopen(path, "rb");
    struct ot_buf b;
    ot_buf_init(&b, NET_TLS_FILE_MAX);
    if (!f) {
        OT_LOG_ERROR("cannot open %s: %s", path, strerror(errno));
        return OT_E_IO;
    }
    for (;;) {
        uint8_t chunk[4096];
        size_t n = fread(chunk, 1, sizeof chunk, f);
        if (n > 0) {
            OT_TRY(ot_buf_append(&b, chunk, n));
        }
        if (n < sizeof chunk) {
            break;
        }
    }
    if (ferror(f)) {
        OT_FAIL(OT_E_IO);
    }
    OT_TRY(ot_buf_append_u8(&b, 0));
    *out = (char *)b.data;
    if (len) {
        *len = b.len;
    }
    b.data = NULL;
out:
    fclose(f);
    ot_buf_free(&b);
    return err;
}

static void net_healthz(struct net_req *req, struct net_resp *resp, void *ctx)
{
    (void)req;
    (void)ctx;
    net_resp_text(resp, 200, NULL, "ok\n");
}

static void net_readyz(struct net_req *req, struct net_resp *resp, void *ctx)
{
    (void)ctx;
    struct net_server *srv = req->srv;
    bool ready = !atomic_load(&srv->stopping)
                 && (!srv->cfg.ops.ready || srv->cfg.ops.ready(srv->cfg.ops_ctx));
    net_resp_text(resp, ready ? 200 : 503, NULL, ready ? "ready\n" : "not ready\n");
}

static void net_metrics_handler(struct net_req *req, struct net_resp *resp, void *ctx)
{
    (void)ctx;
    struct ot_buf b;
    ot_buf_init(&b, 0);
    if (net_metrics_render(req->srv->metrics, &b) != OT_OK) {
        net_resp_error(resp, OT_E_INTERNAL, NULL, NULL, NULL);
    } else {
        net_resp_bytes(resp, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    }
    ot_buf_free(&b);
}

static const struct net_route net_builtin_routes[NET_BUILTINS] = {
    {"GET", "/healthz", 0, false, net_healthz, NULL},
    {"GET", "/readyz", 0, false, net_readyz, NULL},
    {"GET", "/metrics", 0, false, net_metrics_handler, NULL},
};

static bool net_method_ok(const char *m)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (m && strcmp(m, methods[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Splits a pattern into segments; {name} segments become params. Patterns
 * are our own static strings, checked once here. */
static ot_err net_compile(const struct net_route *r, struct net_rt *rt)
{
    const char *p = r->pattern;
    if (!p || p[0] != '/' || !net_method_ok(r->method) || !r->fn || strlen(p) >= NET_MAX_PATH) {
        return OT_E_ARG;
    }
    size_t nparam = 0;
    rt->nseg = 0;
    rt->nlit = 0;
    p++;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 || rt->nseg >= NET_MAX_SEGS) {
            return OT_E_ARG;
        }
        struct net_seg *s = &rt->seg[rt->nseg++];
        if (p[0] == '{') {
            if (n < 3 || p[n - 1] != '}' || n - 2 >= NET_PARAM_NAME_MAX
                || ++nparam > NET_MAX_PARAMS) {
                return OT_E_ARG;
            }
            s->lit = NULL;
            memcpy(s->name, p + 1, n - 2);
            s->name[n - 2] = '\0';
        } else {
            for (size_t i = 0; i < n; i++) {
                if (p[i] == '{' || p[i] == '}' || p[i] == '"' || p[i] == '\\'
                    || (unsigned char)p[i] <= 0x20) {
                    return OT_E_ARG;
                }
            }
            s->lit = p;
            s->len = n;
            rt->nlit++;
        }
        p += n;
        if (*p == '/') {
            p++;
            if (*p == '\0') {
                return OT_E_ARG; /* trailing slash */
            }
        }
    }
    rt->r = r;
    return OT_OK;
}

static ot_err net_add_one(struct net_server *srv, const struct net_route *r, void *ctx)
{
    if (srv->nrt >= NET_MAX_ROUTES + NET_BUILTINS) {
        return OT_E_LIMIT;
    }
    struct net_rt *rt = &srv->rt[srv->nrt];
    ot_err err = net_compile(r, rt);
    if (err != OT_OK) {
        OT_LOG_ERROR("bad route %s %s", r->method ? r->method : "?", r->pattern ? r->pattern : "?");
        return err;
    }
    for (size_t i = 0; i < srv->nrt; i++) {
        if (strcmp(srv->rt[i].r->method, r->method) == 0
            && strcmp(srv->rt[i].r->pattern, r->pattern) == 0) {
            OT_LOG_ERROR("duplicate route %s %s", r->method, r->pattern);
            return OT_E_ARG;
        }
    }
    rt->ctx = ctx;
    err = net_metrics_add_route(srv->metrics, r->method, r->pattern, &rt->metrics_idx);
    if (err != OT_OK) {
        return err;
    }
    srv->nrt++;
    return OT_OK;
}

static char *net_strdup_opt(const char *s, bool *fail)
{
    if (!s) {
        return NULL;
    }
    char *d = strdup(s);
    if (!d) {
        *fail = true;
    }
    return d;
}

static double net_m_in_flight(void *ctx)
{
    struct net_server *srv = ctx;
    pthread_mutex_lock(&srv->mu);
    unsigned n = srv->in_flight;
    pthread_mutex_unlock(&srv->mu);
    return n;
}

static double net_m_auth_failures(void *ctx)
{
    struct net_server *srv = ctx;
    return (double)atomic_load(&srv->auth_failures);
}

ot_err net_server_new(const struct net_server_cfg *cfg, struct net_server **out)
{
    ot_err err = OT_OK;
    *out = NULL;
    if (!cfg || (cfg->tls_cert && !cfg->tls_key) || (!cfg->tls_cert && cfg->tls_key)
        || (cfg->client_ca && !cfg->tls_cert) || cfg->rate_per_s < 0) {
        return OT_E_ARG;
    }
    struct net_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        return OT_E_NOMEM;
    }
    pthread_mutex_init(&srv->mu, NULL);
    pthread_mutex_init(&srv->idem_mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    srv->cfg = *cfg;
    bool fail = false;
    srv->host = net_strdup_opt(cfg->host ? cfg->host : "127.0.0.1", &fail);
    if (fail) {
        OT_FAIL(OT_E_NOMEM);
    }
    srv->cfg.host = srv->host;
    srv->cfg.tls_cert = NULL;
    srv->cfg.tls_key = NULL;
    srv->cfg.client_ca = NULL;
    if (srv->cfg.threads == 0) {
        srv->cfg.threads = 4;
    }
    if (srv->cfg.max_body == 0) {
        srv->cfg.max_body = NET_MAX_BODY_DEFAULT;
    }
    if (srv->cfg.timeout_s == 0) {
        srv->cfg.timeout_s = 30;
    }
    if (srv->cfg.max_conns == 0) {
        srv->cfg.max_conns = 1024;
    }
    if (srv->cfg.rate_per_s > 0 && srv->cfg.rate_burst == 0) {
        srv->cfg.rate_burst = srv->cfg.rate_per_s < 1 ? 1 : (unsigned)srv->cfg.rate_per_s;
    }
    if (srv->cfg.auth_fail_max == 0) {
        srv->cfg.auth_fail_max = 10;
    }
    if (srv->cfg.auth_fail_window_s == 0) {
        srv->cfg.auth_fail_window_s = 60;
    }
    if (cfg->tls_cert) {
        OT_TRY(net_read_file(cfg->tls_cert, &srv->tls_cert, NULL));
        OT_TRY(net_read_file(cfg->tls_key, &srv->tls_key, &srv->tls_key_len));
        if (cfg->client_ca) {
            OT_TRY(net_read_file(cfg->client_ca, &srv->client_ca, NULL));
        }
    }
    OT_TRY(net_metrics_new(&srv->metrics));
    OT_TRY(net_rl_new(&srv->rl_principal));
    OT_TRY(net_rl_new(&srv->rl_authfail));
    OT_TRY(net_metrics_add_route(srv->metrics, "ANY", "unmatched", &srv->metrics_unmatched));
    OT_TRY(net_metrics_register(srv->metrics, "http_requests_in_flight",
                                "Requests being handled now.", NET_METRIC_GAUGE, net_m_in_flight,
                                srv));
    OT_TRY(net_metrics_register(srv->metrics, "http_auth_failures_total",
                                "Failed authentications (bad or missing credentials).",
                                NET_METRIC_COUNTER, net_m_auth_failures, srv));
    for (size_t i = 0; i < NET_BUILTINS; i++) {
        OT_TRY(net_add_one(srv, &net_builtin_routes[i], NULL));
    }
    uint8_t rnd[4];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    (void)snprintf(srv->id_prefix, sizeof srv->id_prefix, "%02x%02x%02x%02x", rnd[0], rnd[1],
                   rnd[2], rnd[3]);
    *out = srv;
    srv = NULL;
out:
    net_server_free(srv);
    return err;
}

ot_err net_server_add_routes(struct net_server *srv, const struct net_route *routes, size_t n,
                             void *ctx)
{
    if (!srv || (!routes && n > 0) || srv->d) {
        return OT_E_ARG;
    }
    for (size_t i = 0; i < n; i++) {
        ot_err err = net_add_one(srv, &routes[i], ctx);
        if (err != OT_OK) {
            return err;
        }
    }
    return OT_OK;
}

void net_server_foreach_route(const struct net_server *srv,
                              void (*fn)(void *ctx, const struct net_route *r), void *ctx)
{
    for (size_t i = 0; i < srv->nrt; i++) {
        fn(ctx, srv->rt[i].r);
    }
}

struct net_metrics *net_server_metrics(struct net_server *srv)
{
    return srv->metrics;
}

uint16_t net_server_port(const struct net_server *srv)
{
    return srv->port;
}

/* ---- per request ---- */

/* Copies s for a log line with anything but printable ASCII replaced. */
static void net_log_safe(char *dst, size_t cap, const char *s)
{
    size_t i = 0;
    for (; s && *s && i + 1 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        char o = '?';
        if (c > 0x20 && c < 0x7f && c != '"') {
            o = (char)c;
        }
        dst[i++] = o;
    }
    dst[i] = '\0';
}

static bool net_token_ok(const char *s, size_t max, bool (*ok)(unsigned char))
{
    size_t n = 0;
    for (; *s; s++, n++) {
        if (n >= max || !ok((unsigned char)*s)) {
            return false;
        }
    }
    return n > 0;
}

static bool net_reqid_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'
           || c == '_' || c == '.';
}

static bool net_idem_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

static void net_request_id(struct net_server *srv, struct net_req *req)
{
    const char *h = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (h && net_token_ok(h, NET_REQUEST_ID_MAX, net_reqid_char)) {
        (void)snprintf(req->request_id, sizeof req->request_id, "%s", h);
        return;
    }
    uint64_t n = atomic_fetch_add(&srv->req_seq, 1) + 1;
    (void)snprintf(req->request_id, sizeof req->request_id, "%s-%012llx", srv->id_prefix,
                   (unsigned long long)n);
}

static void net_client_addr(struct net_req *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(req->client_ip, sizeof req->client_ip, "?");
    if (!ci || !ci->client_addr) {
        return;
    }
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, req->client_ip, sizeof req->client_ip);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, req->client_ip, sizeof req->client_ip);
    }
}

/* Finds the route for method + path. *path_known: some route has this path
 * with another method (405). Fills req's params from req->path. The route
 * with the most literal segments wins ("/x/search" before "/x/{id}"). */
static const struct net_rt *net_match(struct net_server *srv, struct net_req *req, bool *path_known,
                                      char *allow, size_t allow_cap)
{
    *path_known = false;
    allow[0] = '\0';
    const char *seg[NET_MAX_SEGS];
    size_t seglen[NET_MAX_SEGS];
    size_t nseg = 0;
    const char *p = req->url;
    if (p[0] != '/' || strlen(p) >= sizeof req->path) {
        return NULL;
    }
    p++;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 || nseg >= NET_MAX_SEGS) {
            return NULL; /* empty segment ("//", trailing "/") or too deep */
        }
        seg[nseg] = p;
        seglen[nseg] = n;
        nseg++;
        p += n;
        if (*p == '/') {
            p++;
            if (*p == '\0') {
                return NULL;
            }
        }
    }
    const struct net_rt *best = NULL;
    for (size_t i = 0; i < srv->nrt; i++) {
        const struct net_rt *rt = &srv->rt[i];
        if (rt->nseg != nseg) {
            continue;
        }
        bool ok = true;
        for (size_t s = 0; s < nseg && ok; s++) {
            if (rt->seg[s].lit) {
                ok = rt->seg[s].len == seglen[s] && memcmp(rt->seg[s].lit, seg[s], seglen[s]) == 0;
            }
        }
        if (!ok) {
            continue;
        }
        if (strcmp(rt->r->method, req->method) != 0) {
            *path_known = true;
            size_t used = strlen(allow);
            if (!strstr(allow, rt->r->method)) {
                (void)snprintf(allow + used, allow_cap - used, "%s%s", used ? ", " : "",
                               rt->r->method);
            }
            continue;
        }
        if (!best || rt->nlit > best->nlit) {
            best = rt;
        }
    }
    if (!best) {
        return NULL;
    }
    /* Param values: copy the path and cut it at the segment ends. */
    memcpy(req->path, req->url, strlen(req->url) + 1);
    req->nparam = 0;
    for (size_t s = 0; s < nseg; s++) {
        size_t off = (size_t)(seg[s] - req->url);
        req->path[off + seglen[s]] = '\0';
        if (!best->seg[s].lit && req->nparam < NET_MAX_PARAMS) {
            req->param_name[req->nparam] = best->seg[s].name;
            req->param_val[req->nparam] = &req->path[off];
            req->nparam++;
        }
    }
    return best;
}

/* Sends req->resp; logs, counts and audits the outcome. */
static enum MHD_Result net_send(struct net_req *req)
{
    struct net_server *srv = req->srv;
    struct net_resp *resp = &req->resp;
    if (!resp->set) {
        OT_LOG_ERROR("req_id=%s handler gave no answer", req->request_id);
        net_resp_error(resp, OT_E_INTERNAL, NULL, NULL, NULL);
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(resp->len, resp->body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        return MHD_NO;
    }
    resp->body = NULL; /* MHD owns it now */
    resp->len = 0;
    (void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->ctype);
    (void)MHD_add_response_header(r, "X-Request-Id", req->request_id);
    (void)MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    for (size_t i = 0; i < resp->nhdr; i++) {
        (void)MHD_add_response_header(r, resp->hdr[i].name, resp->hdr[i].value);
    }
    if (atomic_load(&srv->stopping)) {
        (void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    enum MHD_Result ok = MHD_queue_response(req->conn, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    req->answered = true;

    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs =
        (double)(t1.tv_sec - req->t0.tv_sec) + (double)(t1.tv_nsec - req->t0.tv_nsec) / 1e9;
    net_metrics_observe(srv->metrics, req->rt ? req->rt->metrics_idx : srv->metrics_unmatched,
                        resp->status, secs);
    if (ot_log_enabled(OT_LOG_LVL_INFO)) {
        char path[160];
        net_log_safe(path, sizeof path, req->url);
        OT_LOG_INFO("req_id=%s ip=%s method=%s path=%s route=%s status=%d ms=%.3f principal=%s",
                    req->request_id, req->client_ip, net_method_ok(req->method) ? req->method : "?",
                    path, req->rt ? req->rt->r->pattern : "-", resp->status, secs * 1e3,
                    req->authenticated ? req->principal.name : "-");
    }
    if (req->rt && req->rt->r->allow != 0 && srv->cfg.ops.audit) {
        struct net_audit_event ev = {
            .principal = req->authenticated ? &req->principal : NULL,
            .method = req->rt->r->method,
            .route = req->rt->r->pattern,
            .path = req->url,
            .status = resp->status,
            .error_code =
                resp->status >= 400 ? (resp->error_code[0] ? resp->error_code : "error") : NULL,
            .request_id = req->request_id,
            .client_ip = req->client_ip,
        };
        srv->cfg.ops.audit(srv->cfg.ops_ctx, &ev);
    }
    return ok;
}

static enum MHD_Result net_send_error(struct net_req *req, ot_err e, const char *message)
{
    net_resp_error(&req->resp, e, NULL, message, NULL);
    return net_send(req);
}

/* Client certificate subject, when the TLS peer sent one that verified
 * against client_ca. */
static bool net_peer_subject(struct net_req *req, char *out, size_t cap)
{
    if (!req->srv->client_ca) {
        return false;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session) {
        return false;
    }
    gnutls_session_t s = (gnutls_session_t)ci->tls_session;
    unsigned status = 0;
    if (gnutls_certificate_verify_peers2(s, &status) != GNUTLS_E_SUCCESS || status != 0) {
        return false;
    }
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
    if (!certs || n == 0) {
        return false;
    }
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) != GNUTLS_E_SUCCESS) {
        return false;
    }
    bool ok = false;
    gnutls_datum_t dn = {NULL, 0};
    if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == GNUTLS_E_SUCCESS
        && gnutls_x509_crt_get_dn3(crt, &dn, 0) == GNUTLS_E_SUCCESS && dn.size < cap) {
        memcpy(out, dn.data, dn.size);
        out[dn.size] = '\0';
        ok = true;
    }
    gnutls_free(dn.data);
    gnutls_x509_crt_deinit(crt);
    return ok;
}

/* Authentication, kind check and rate limit for a protected route.
 * Returns true when the request may go on; otherwise the answer is queued. */
static bool net_gate(struct net_req *req, enum MHD_Result *res)
{
    struct net_server *srv = req->srv;
    const struct net_route *r = req->rt->r;
    double now = net_now();
    uint64_t ipkey = net_rl_hash(req->client_ip);
    unsigned retry = 0;
    char num[24];
    if (net_rl_window_count(srv->rl_authfail, ipkey, srv->cfg.auth_fail_window_s, now, &retry)
        >= srv->cfg.auth_fail_max) {
        OT_LOG_WARN("req_id=%s ip=%s too many failed authentications", req->request_id,
                    req->client_ip);
        net_resp_error(&req->resp, OT_E_RATE_LIMITED, NULL,
                       "too many failed authentications; retry later", NULL);
        (void)snprintf(num, sizeof num, "%u", retry);
        net_resp_header(&req->resp, MHD_HTTP_HEADER_RETRY_AFTER, num);
        *res = net_send(req);
        return false;
    }
    const char *authz = net_req_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *token = NULL;
    if (authz && strncasecmp(authz, "Bearer ", 7) == 0) {
        token = authz + 7;
        while (*token == ' ') {
            token++;
        }
        if (*token == '\0') {
            token = NULL;
        }
    }
    char subject[512];
    bool have_subject = net_peer_subject(req, subject, sizeof subject);
    ot_err e = OT_E_AUTH;
    if ((token || have_subject) && srv->cfg.ops.authenticate) {
        memset(&req->principal, 0, sizeof req->principal);
        e = srv->cfg.ops.authenticate(srv->cfg.ops_ctx, token, have_subject ? subject : NULL,
                                      &req->principal);
        req->principal.name[sizeof req->principal.name - 1] = '\0';
    }
    if (e != OT_OK) {
        if (e == OT_E_AUTH) {
            net_rl_window_add(srv->rl_authfail, ipkey, srv->cfg.auth_fail_window_s, now);
            atomic_fetch_add(&srv->auth_failures, 1);
            OT_LOG_INFO("req_id=%s ip=%s authentication failed (%s)", req->request_id,
                        req->client_ip, token ? "bad token" : "no credentials");
        } else {
            OT_LOG_ERROR("req_id=%s authenticate: %s", req->request_id, ot_strerror(e));
        }
        /* A store that is down answers 503, so clients retry; anything
         * else unexpected is ours (500). */
        ot_err shown = e;
        if (e != OT_E_AUTH && e != OT_E_DB && e != OT_E_TIMEOUT) {
            shown = OT_E_INTERNAL;
        }
        net_resp_error(&req->resp, shown, NULL,
                       e == OT_E_AUTH ? "missing or invalid credentials" : NULL, NULL);
        if (e == OT_E_AUTH) {
            net_resp_header(&req->resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
        }
        *res = net_send(req);
        return false;
    }
    req->authenticated = true;
    if ((req->principal.kind & r->allow) == 0) {
        net_resp_error(&req->resp, OT_E_FORBIDDEN, NULL, "principal kind not allowed here", NULL);
        *res = net_send(req);
        return false;
    }
    if (srv->cfg.rate_per_s > 0) {
        uint64_t key = ((uint64_t)req->principal.kind << 56) ^ (uint64_t)req->principal.id;
        if (!net_rl_take(srv->rl_principal, key, srv->cfg.rate_per_s, srv->cfg.rate_burst, now,
                         &retry)) {
            net_resp_error(&req->resp, OT_E_RATE_LIMITED, NULL, NULL, NULL);
            (void)snprintf(num, sizeof num, "%u", retry);
            net_resp_header(&req->resp, MHD_HTTP_HEADER_RETRY_AFTER, num);
            *res = net_send(req);
            return false;
        }
    }
    return true;
}

/* Feeds s[0..n) to md, percent-encoding (%XX, upper case) every byte
 * other than the RFC 3986 unreserved ones when all is true, and only '%'
 * and '?' otherwise (a path: what a route can hold hashes as itself). */
static bool net_hash_pct(EVP_MD_CTX *md, const char *s, size_t n, bool all)
{
    static const char hexd[] = "0123456789ABCDEF";
    char buf[256];
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool plain =
            all ? ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                   || c == '-' || c == '.' || c == '_' || c == '~')
                : (c != '%' && c != '?');
        if (k + 3 > sizeof buf) {
            if (EVP_DigestUpdate(md, buf, k) != 1) {
                return false;
            }
            k = 0;
        }
        if (plain) {
            buf[k++] = (char)c;
        } else {
            buf[k++] = '%';
            buf[k++] = hexd[c >> 4];
            buf[k++] = hexd[c & 0x0f];
        }
    }
    return k == 0 || EVP_DigestUpdate(md, buf, k) == 1;
}

struct net_hash_query {
    EVP_MD_CTX *md;
    size_t n;
    bool ok;
};

static enum MHD_Result net_hash_query_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                         size_t key_size, const char *value, size_t value_size)
{
    struct net_hash_query *q = cls;

    (void)kind;
    q->ok = q->ok && EVP_DigestUpdate(q->md, q->n == 0 ? "?" : "&", 1) == 1
            && net_hash_pct(q->md, key, key_size, true)
            && (value == NULL
                || (EVP_DigestUpdate(q->md, "=", 1) == 1
                    && net_hash_pct(q->md, value, value_size, true)));
    q->n++;
    return q->ok ? MHD_YES : MHD_NO;
}

/* The request hash of an Idempotency-Key (http.h): SHA-256 over
 *
 *   method NUL path [ "?" query ] NUL body
 *
 * where path is the request path with '%' and '?' percent-encoded and
 * query lists the query arguments in the order received, "key" (no '=' in
 * the request) or "key=value", joined by '&', each key and value (as
 * decoded by MHD, with their lengths, so any byte counts) percent-encoded
 * but for the unreserved characters. So a replay with other arguments, or
 * the same ones in another order, is another request (422), while an
 * argument written another way (%61 for a) is the same. The encoding is
 * unambiguous: the first '?' ends the path and the first NUL after it the
 * query. A request without arguments hashes as before arguments counted
 * (method NUL path NUL body), so records stored then still replay. */
static ot_err net_req_hash(struct net_req *req, uint8_t out[32])
{
    ot_err err = OT_OK;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    struct net_hash_query q = {md, 0, true};
    unsigned n = 0;
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(md, req->method, strlen(req->method) + 1) != 1
        || !net_hash_pct(md, req->url, strlen(req->url), false)) {
        err = OT_E_CRYPTO;
        goto out;
    }
    (void)MHD_get_connection_values_n(req->conn, MHD_GET_ARGUMENT_KIND, net_hash_query_cb, &q);
    if (!q.ok || EVP_DigestUpdate(md, "", 1) != 1
        || (req->body.len > 0 && EVP_DigestUpdate(md, req->body.data, req->body.len) != 1)
        || EVP_DigestFinal_ex(md, out, &n) != 1 || n != 32) {
        err = OT_E_CRYPTO;
    }
out:
    EVP_MD_CTX_free(md);
    return err;
}

/* Idempotency-Key replays. Returns true when the handler must run (with
 * req->idem_hash set); false when an answer (the replay, 422 or a store
 * error) has been set. */
static bool net_idem_check(struct net_req *req)
{
    struct net_server *srv = req->srv;
    const uint8_t *hash = req->idem_hash;
    if (net_req_hash(req, req->idem_hash) != OT_OK) {
        net_resp_error(&req->resp, OT_E_INTERNAL, NULL, NULL, NULL);
        return false;
    }
    req->idem_ready = true;
    if (!srv->cfg.ops.idem_get) {
        return true;
    }
    uint8_t stored[32];
    int status = 0;
    char *body = NULL;
    size_t len = 0;
    ot_err e = srv->cfg.ops.idem_get(srv->cfg.ops_ctx, &req->principal, req->idem_key, stored,
                                     &status, &body, &len);
    if (e == OT_E_NOT_FOUND) {
        free(body);
        return true;
    }
    if (e != OT_OK) {
        free(body);
        OT_LOG_ERROR("req_id=%s idempotency lookup: %s", req->request_id, ot_strerror(e));
        net_resp_error(&req->resp, e == OT_E_DB || e == OT_E_TIMEOUT ? e : OT_E_INTERNAL, NULL,
                       NULL, NULL);
        return false;
    }
    if (memcmp(stored, hash, 32) != 0) {
        free(body);
        net_resp_error(&req->resp, OT_E_IDEM_MISMATCH, NULL,
                       "Idempotency-Key already used with a different request",
                       NET_IDEM_KEY_HEADER);
        return false;
    }
    OT_LOG_DEBUG("req_id=%s idempotent replay", req->request_id);
    net_resp_bytes(&req->resp, status, "application/json", body, len);
    net_resp_header(&req->resp, "Idempotent-Replayed", "true");
    free(body);
    return false;
}

/* Marks (principal, key) as being handled. Without this, two requests with
 * the same key arriving together would both miss the store and both run.
 * Returns false when the pair is already busy. A full table (more than
 * NET_IDEM_BUSY idempotent requests at once) lets the request through
 * unguarded rather than refusing service. */
static bool net_idem_claim(struct net_server *srv, uint64_t h, bool *claimed)
{
    bool ok = true;
    *claimed = false;
    pthread_mutex_lock(&srv->idem_mu);
    size_t free_slot = NET_IDEM_BUSY;
    for (size_t i = 0; i < NET_IDEM_BUSY; i++) {
        if (srv->idem_busy[i] == h) {
            ok = false;
            break;
        }
        if (srv->idem_busy[i] == 0 && free_slot == NET_IDEM_BUSY) {
            free_slot = i;
        }
    }
    if (ok && free_slot < NET_IDEM_BUSY) {
        srv->idem_busy[free_slot] = h;
        *claimed = true;
    }
    pthread_mutex_unlock(&srv->idem_mu);
    return ok;
}

static void net_idem_release(struct net_server *srv, uint64_t h)
{
    pthread_mutex_lock(&srv->idem_mu);
    for (size_t i = 0; i < NET_IDEM_BUSY; i++) {
        if (srv->idem_busy[i] == h) {
            srv->idem_busy[i] = 0;
            break;
        }
    }
    pthread_mutex_unlock(&srv->idem_mu);
}

static void net_run_handler(struct net_req *req)
{
    struct net_server *srv = req->srv;
    const struct net_route *r = req->rt->r;
    uint64_t busy = 0;
    bool claimed = false;
    if (r->idempotent) {
        char k[NET_IDEM_KEY_MAX + 48];
        (void)snprintf(k, sizeof k, "%u:%lld:%s", req->principal.kind, (long long)req->principal.id,
                       req->idem_key);
        busy = net_rl_hash(k);
        if (!net_idem_claim(srv, busy, &claimed)) {
            net_resp_error(&req->resp, OT_E_CONFLICT, NULL,
                           "a request with this Idempotency-Key is in progress",
                           NET_IDEM_KEY_HEADER);
            return;
        }
        if (!net_idem_check(req)) {
            goto out;
        }
    }
    struct json_err qerr = {0};
    ot_err qe = net_req_check_query(req, r->query, &qerr);
    if (qe != OT_OK) {
        net_resp_json_error(&req->resp, qe, &qerr);
        goto out;
    }
    r->fn(req, &req->resp, req->rt->ctx);
    /* Only successes are stored: a rejected request must leave no trace in
     * the database (a retry simply gets the same 4xx again), and a 5xx is
     * worth retrying for real. A handler that stored its answer in its own
     * transaction (net_req_idem_stored) is not stored twice: that record
     * is the one a crash cannot separate from the change. */
    if (req->resp.set && r->idempotent && !req->idem_stored && srv->cfg.ops.idem_put
        && req->resp.status >= 200 && req->resp.status < 300) {
        ot_err e =
            srv->cfg.ops.idem_put(srv->cfg.ops_ctx, &req->principal, req->idem_key, req->idem_hash,
                                  req->resp.status, req->resp.body, req->resp.len);
        if (e != OT_OK && e != OT_E_CONFLICT) {
            OT_LOG_ERROR("req_id=%s idempotency store: %s", req->request_id, ot_strerror(e));
        }
    }
out:
    if (claimed) {
        net_idem_release(srv, busy);
    }
}

static void net_inflight(struct net_server *srv, int delta)
{
    pthread_mutex_lock(&srv->mu);
    if (delta > 0) {
        srv->in_flight++;
    } else if (srv->in_flight > 0) {
        srv->in_flight--;
        if (srv->in_flight == 0) {
            pthread_cond_broadcast(&srv->cv);
        }
    }
    pthread_mutex_unlock(&srv->mu);
}

/* First call: everything that needs only the headers. */
static enum MHD_Result net_first(struct net_req *req)
{
    struct net_server *srv = req->srv;
    net_request_id(srv, req);
    net_client_addr(req);
    if (atomic_load(&srv->stopping)) {
        net_resp_text(&req->resp, 503, NULL, "shutting down\n");
        return net_send(req);
    }
    bool known = false;
    char allow[64];
    req->rt = net_match(srv, req, &known, allow, sizeof allow);
    if (!req->rt) {
        if (known) {
            net_resp_error(&req->resp, OT_E_UNSUPPORTED, "method_not_allowed", "method not allowed",
                           NULL);
            net_resp_header(&req->resp, MHD_HTTP_HEADER_ALLOW, allow);
            return net_send(req);
        }
        return net_send_error(req, OT_E_NOT_FOUND, "no such resource");
    }
    const char *cl = net_req_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(cl, &end, 10);
        if (errno != 0 || end == cl || *end != '\0' || v > srv->cfg.max_body) {
            req->too_large = true;
            return net_send_error(req, OT_E_LIMIT, "request body too large");
        }
    }
    enum MHD_Result res = MHD_YES;
    if (req->rt->r->allow != 0 && !net_gate(req, &res)) {
        return res;
    }
    if (req->rt->r->idempotent) {
        const char *k = net_req_header(req, NET_IDEM_KEY_HEADER);
        if (!k || !net_token_ok(k, NET_IDEM_KEY_MAX, net_idem_char)) {
            net_resp_error(&req->resp, OT_E_ARG, "invalid_request",
                           k ? "Idempotency-Key must be 1-128 printable characters"
                             : "Idempotency-Key header required",
                           NET_IDEM_KEY_HEADER);
            return net_send(req);
        }
        (void)snprintf(req->idem_key, sizeof req->idem_key, "%s", k);
    }
    return MHD_YES;
}

static enum MHD_Result net_access(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct net_server *srv = cls;
    struct net_req *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req) {
            return MHD_NO;
        }
        clock_gettime(CLOCK_MONOTONIC, &req->t0);
        req->srv = srv;
        req->conn = conn;
        req->url = url;
        req->method = method;
        ot_buf_init(&req->body, srv->cfg.max_body);
        *con_cls = req;
        net_inflight(srv, 1);
        req->counted = true;
        return net_first(req);
    }
    if (req->answered) {
        /* Answer already queued on the first call: drop what still comes. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!req->too_large && ot_buf_append(&req->body, upload_data, *upload_data_size) != OT_OK) {
            req->too_large = true; /* chunked upload over the cap: discard the rest */
            ot_buf_free(&req->body);
            ot_buf_init(&req->body, srv->cfg.max_body);
        }
        if (req->too_large) {
            /* Drain a little so that an honest client gets its 413, but do
             * not read an endless stream: past NET_DRAIN_MAX, hang up. */
            req->discarded += *upload_data_size;
            if (req->discarded > NET_DRAIN_MAX) {
                OT_LOG_INFO("req_id=%s body far over the cap: closing", req->request_id);
                return MHD_NO;
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->too_large) {
        return net_send_error(req, OT_E_LIMIT, "request body too large");
    }
    net_run_handler(req);
    return net_send(req);
}

static void net_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    struct net_server *srv = cls;
    struct net_req *req = *con_cls;
    if (!req) {
        return;
    }
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        OT_LOG_DEBUG("req_id=%s terminated early (%d)", req->request_id, (int)toe);
    }
    bool counted = req->counted;
    net_resp_clear(&req->resp);
    ot_buf_free(&req->body);
    ot_mem_wipe(&req->principal, sizeof req->principal);
    free(req);
    *con_cls = NULL;
    if (counted) {
        net_inflight(srv, -1);
    }
}

static void net_mhd_log(void *cls, const char *fmt, va_list ap) OT_PRINTF(2, 0);

static void net_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (!ot_log_enabled(OT_LOG_LVL_WARN)) {
        return;
    }
    char line[512];
    int n = vsnprintf(line, sizeof line, fmt, ap);
    if (n < 0) {
        return;
    }
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
        line[--len] = '\0';
    }
    OT_LOG_WARN("mhd: %s", line);
}

ot_err net_server_start(struct net_server *srv)
{
    ot_err err = OT_OK;
    struct addrinfo hints = {0}, *ai = NULL;
    if (!srv || srv->d) {
        return OT_E_STATE;
    }
    bool any_auth = false;
    for (size_t i = 0; i < srv->nrt; i++) {
        any_auth = any_auth || srv->rt[i].r->allow != 0;
    }
    if (any_auth && !srv->cfg.ops.authenticate) {
        OT_LOG_ERROR("protected routes but no authenticate callback");
        return OT_E_ARG;
    }
    char port[8];
    (void)snprintf(port, sizeof port, "%u", (unsigned)srv->cfg.port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    int rc = getaddrinfo(srv->host, port, &hints, &ai);
    if (rc != 0 || !ai) {
        OT_LOG_ERROR("bad listen address %s: %s", srv->host, gai_strerror(rc));
        return OT_E_ARG;
    }
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    struct MHD_OptionItem opts[16];
    size_t n = 0;
    /* The logger first, so MHD's own messages about later options reach it. */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)net_mhd_log, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, srv->cfg.threads, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, srv->cfg.timeout_s, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, srv->cfg.max_conns, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                        (intptr_t)NET_CONN_MEMORY, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)net_completed, srv};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL};
    if (srv->tls_cert) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            OT_LOG_ERROR("libmicrohttpd built without TLS");
            OT_FAIL(OT_E_UNSUPPORTED);
        }
        flags |= MHD_USE_TLS;
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, srv->tls_cert};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                            "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"};
        if (srv->client_ca) {
            opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, srv->client_ca};
        }
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    srv->d = MHD_start_daemon(flags, 0, NULL, NULL, net_access, srv, MHD_OPTION_ARRAY, opts,
                              MHD_OPTION_END);
    if (!srv->d) {
        OT_LOG_ERROR("cannot listen on %s:%u", srv->host, (unsigned)srv->cfg.port);
        OT_FAIL(OT_E_IO);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : srv->cfg.port;
    atomic_store(&srv->stopping, false);
    OT_LOG_INFO("listening on %s port %u (%s, %u threads)", srv->host, (unsigned)srv->port,
                srv->tls_cert ? (srv->client_ca ? "tls+mtls" : "tls") : "plain http",
                srv->cfg.threads);
out:
    freeaddrinfo(ai);
    return err;
}

void net_server_stop(struct net_server *srv, unsigned grace_ms)
{
    if (!srv || !srv->d) {
        return;
    }
    atomic_store(&srv->stopping, true);
    MHD_socket ls = MHD_quiesce_daemon(srv->d);
    if (ls != MHD_INVALID_SOCKET) {
        close(ls);
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += grace_ms / 1000;
    until.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
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
    MHD_stop_daemon(srv->d);
    srv->d = NULL;
    OT_LOG_INFO("stopped");
}

void net_server_free(struct net_server *srv)
{
    if (!srv) {
        return;
    }
    net_server_stop(srv, 0);
    net_rl_free(srv->rl_authfail);
    net_rl_free(srv->rl_principal);
    net_metrics_free(srv->metrics);
    if (srv->tls_key) {
        ot_mem_wipe(srv->tls_key, srv->tls_key_len);
    }
    free(srv->tls_key);
    free(srv->tls_cert);
    free(srv->client_ca);
    free(srv->host);
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->idem_mu);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}
