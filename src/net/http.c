/* The request pipeline of http.h (routing, authentication, limits,
 * idempotency, the handler, the answer) and the server object. The
 * transport (event loop, connections, TLS, worker threads, streams) is in
 * http_io.c; the request framing in http_parse.c.
 *
 * A request reaches net_process on a worker thread complete: its header
 * section parsed, its body read (or too_large set). net_process leaves the
 * answer in req->resp; http_io.c serialises and sends it, then calls
 * net_finish (log line, metrics, audit).
 */
#include "net/http.h"

#define OT_LOG_COMPONENT "net.http"
#include "core/buf.h"
#include "core/log.h"
#include "net/http_err.h"
#include "net/net_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NET_IDEM_KEY_HEADER "Idempotency-Key"
#define NET_CONNS_PER_IP    256 /* default cfg.max_conns_per_ip */

static ot_err net_proxies_parse(struct net_server *srv, const char *list);

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
    return req->dpath;
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
    for (size_t i = 0; i < req->nq; i++) {
        if (strcmp(req->q[i].key, name) == 0) {
            return req->q[i].value;
        }
    }
    return NULL;
}

void net_req_foreach_query(const struct net_req *req,
                           void (*fn)(void *ctx, const char *key, const char *value), void *ctx)
{
    for (size_t i = 0; i < req->nq; i++) {
        fn(ctx, req->q[i].key, req->q[i].value);
    }
}

ot_err net_req_check_query(const struct net_req *req, const char *const *allowed,
                           struct json_err *err)
{
    for (size_t i = 0; i < req->nq; i++) {
        const char *key = req->q[i].key;
        char name[64];
        net_log_safe(name, sizeof name, key);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(req->q[j].key, key) == 0) {
                return json_err_set(err, OT_E_FORMAT, name, "repeated query argument");
            }
        }
        bool ok = false;
        for (size_t j = 0; allowed && allowed[j]; j++) {
            if (strcmp(key, allowed[j]) == 0) {
                ok = true;
                break;
            }
        }
        if (!ok) {
            return json_err_set(err, OT_E_FORMAT, name, "unknown query argument");
        }
    }
    return OT_OK;
}

const char *net_req_header(const struct net_req *req, const char *name)
{
    return net_http_header(&req->h, name);
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

const char *net_req_token(const struct net_req *req)
{
    return req->authenticated ? req->token : NULL;
}

const char *net_req_cert_subject(const struct net_req *req)
{
    return req->authenticated && req->token == NULL && req->subject[0] != '\0' ? req->subject
                                                                               : NULL;
}

bool net_req_via_cookie(const struct net_req *req)
{
    return req->authenticated && req->token != NULL && req->token == req->cookie_tok;
}

ot_err net_csrf_token(const char *token, char *out, size_t cap)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    static const char tag[] = "opentsm-csrf"; /* hashed with its NUL */
    uint8_t md[32];
    unsigned mdlen = 0;
    EVP_MD_CTX *x = NULL;
    size_t o = 0;

    if (token == NULL || out == NULL) {
        return OT_E_ARG;
    }
    if (cap < NET_CSRF_LEN + 1) {
        return OT_E_BUF_SMALL;
    }
    x = EVP_MD_CTX_new();
    if (x == NULL || EVP_DigestInit_ex(x, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(x, tag, sizeof tag) != 1
        || EVP_DigestUpdate(x, token, strlen(token)) != 1 || EVP_DigestFinal_ex(x, md, &mdlen) != 1
        || mdlen != sizeof md) {
        EVP_MD_CTX_free(x);
        return OT_E_CRYPTO;
    }
    EVP_MD_CTX_free(x);
    for (size_t i = 0; i < sizeof md; i += 3) {
        uint32_t v = (uint32_t)md[i] << 16;
        size_t n = sizeof md - i < 3 ? sizeof md - i : 3;
        if (n > 1) {
            v |= (uint32_t)md[i + 1] << 8;
        }
        if (n > 2) {
            v |= md[i + 2];
        }
        for (size_t k = 0; k <= n; k++) {
            out[o++] = b64[(v >> (18 - 6 * k)) & 63];
        }
    }
    out[o] = '\0';
    return OT_OK;
}

/* The value of cookie name in the Cookie header(s) (RFC 6265 5.4:
 * "a=b; c=d"), copied into out; NULL when absent, empty or too long. */
static const char *net_cookie_find(const struct net_req *req, const char *name, char *out,
                                   size_t cap)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < req->h.nhdr; i++) {
        if (strcasecmp(req->h.hdr[i].name, "Cookie") != 0) {
            continue;
        }
        const char *p = req->h.hdr[i].value;
        while (*p != '\0') {
            while (*p == ' ' || *p == ';') {
                p++;
            }
            const char *end = strchr(p, ';');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
                size_t vl = len - nl - 1;
                while (vl > 0 && p[nl + 1 + vl - 1] == ' ') {
                    vl--;
                }
                if (vl == 0 || vl >= cap) {
                    return NULL;
                }
                memcpy(out, p + nl + 1, vl);
                out[vl] = '\0';
                return out;
            }
            p += len;
        }
    }
    return NULL;
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

void net_req_change_audited(struct net_req *req)
{
    req->change_audited = true;
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
    {"GET", "/metrics", NET_P_OPERATOR, false, net_metrics_handler, NULL},
};

/* /metrics with cfg.metrics = NET_METRICS_PUBLIC. */
static const struct net_route net_metrics_public = {"GET", "/metrics",          0,
                                                    false, net_metrics_handler, NULL};

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
    if (cfg->session_cookie != NULL) {
        size_t cl = strlen(cfg->session_cookie);
        if (cl == 0 || cl >= sizeof srv->session_cookie
            || strspn(cfg->session_cookie, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                           "0123456789_-")
                   != cl) {
            OT_FAIL(OT_E_ARG);
        }
        memcpy(srv->session_cookie, cfg->session_cookie, cl + 1);
    }
    srv->cfg.session_cookie = NULL;
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
    if (srv->cfg.sse_heartbeat_s == 0) {
        srv->cfg.sse_heartbeat_s = 15;
    }
    if (srv->cfg.stream_buf_max == 0) {
        srv->cfg.stream_buf_max = (size_t)64 * 1024;
    }
    if (srv->cfg.max_conns_per_ip == 0) {
        srv->cfg.max_conns_per_ip = NET_CONNS_PER_IP;
    }
    if (cfg->metrics != NET_METRICS_OPERATOR && cfg->metrics != NET_METRICS_PUBLIC
        && cfg->metrics != NET_METRICS_OFF) {
        OT_FAIL(OT_E_ARG);
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
    OT_TRY(net_proxies_parse(srv, cfg->trusted_proxies));
    srv->cfg.trusted_proxies = NULL;
    if (cfg->tls_cert) {
        OT_TRY(net_tls_new(srv, cfg));
    }
    OT_TRY(net_metrics_new(&srv->metrics));
    OT_TRY(net_rl_new(&srv->rl_principal));
    OT_TRY(net_rl_new(&srv->rl_authfail));
    OT_TRY(net_rl_new(&srv->rl_credfail));
    OT_TRY(net_metrics_add_route(srv->metrics, "ANY", "unmatched", &srv->metrics_unmatched));
    OT_TRY(net_metrics_register(srv->metrics, "http_requests_in_flight",
                                "Requests being handled now.", NET_METRIC_GAUGE, net_m_in_flight,
                                srv));
    OT_TRY(net_metrics_register(srv->metrics, "http_auth_failures_total",
                                "Failed authentications (bad or missing credentials).",
                                NET_METRIC_COUNTER, net_m_auth_failures, srv));
    for (size_t i = 0; i < NET_BUILTINS; i++) {
        const struct net_route *r = &net_builtin_routes[i];
        /* Operator-only /metrics needs authentication: a server without an
         * authenticate callback does not serve it at all. */
        if (r->fn == net_metrics_handler
            && (cfg->metrics == NET_METRICS_OFF
                || (cfg->metrics == NET_METRICS_OPERATOR && !cfg->ops.authenticate))) {
            continue;
        }
        if (r->fn == net_metrics_handler && cfg->metrics == NET_METRICS_PUBLIC) {
            r = &net_metrics_public;
        }
        OT_TRY(net_add_one(srv, r, NULL));
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
    if (!srv || (!routes && n > 0) || srv->io) {
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

/* ---- trusted proxies ---- */

static bool net_cidr_parse(const char *s, size_t n, struct net_cidr *out)
{
    char tmp[64];
    if (n == 0 || n >= sizeof tmp) {
        return false;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *slash = strchr(tmp, '/');
    long bits = -1;
    if (slash) {
        char *end = NULL;
        *slash = '\0';
        errno = 0;
        bits = strtol(slash + 1, &end, 10);
        if (errno != 0 || end == slash + 1 || *end != '\0' || bits < 0) {
            return false;
        }
    }
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, tmp, out->addr) == 1) {
        out->family = AF_INET;
        out->bits = bits < 0 ? 32 : (unsigned)bits;
        return out->bits <= 32;
    }
    if (inet_pton(AF_INET6, tmp, out->addr) == 1) {
        out->family = AF_INET6;
        out->bits = bits < 0 ? 128 : (unsigned)bits;
        return out->bits <= 128;
    }
    return false;
}

static bool net_cidr_has(const struct net_cidr *c, const struct net_cidr *ip)
{
    if (c->family != ip->family) {
        return false;
    }
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, ip->addr, full) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (c->addr[full] & mask) == (ip->addr[full] & mask);
}

/* "10.0.0.1, 192.168.0.0/16 ::1": addresses or CIDR blocks, separated by
 * commas or blanks. */
static ot_err net_proxies_parse(struct net_server *srv, const char *list)
{
    const char *p = list;
    while (p && *p) {
        while (*p == ',' || *p == ' ' || *p == '\t') {
            p++;
        }
        const char *s = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }
        if (p == s) {
            break;
        }
        if (srv->nproxies >= NET_MAX_PROXIES
            || !net_cidr_parse(s, (size_t)(p - s), &srv->proxies[srv->nproxies])) {
            OT_LOG_ERROR("bad trusted proxy entry '%.*s'", (int)(p - s), s);
            return OT_E_ARG;
        }
        srv->nproxies++;
    }
    return OT_OK;
}

static bool net_proxy_trusted(const struct net_server *srv, const char *ip)
{
    struct net_cidr a;
    if (srv->nproxies == 0 || !net_cidr_parse(ip, strlen(ip), &a)) {
        return false;
    }
    for (size_t i = 0; i < srv->nproxies; i++) {
        if (net_cidr_has(&srv->proxies[i], &a)) {
            return true;
        }
    }
    return false;
}

/* The client address: the socket peer, or behind a trusted proxy the last
 * hop of X-Forwarded-For that is not itself a trusted proxy (the hops
 * before it were written by whoever the client is, and prove nothing). */
static void net_client_addr(struct net_req *req)
{
    struct net_server *srv = req->srv;
    (void)snprintf(req->client_ip, sizeof req->client_ip, "%s", req->peer_ip);
    if (!net_proxy_trusted(srv, req->peer_ip)) {
        return;
    }
    const char *xff = net_req_header(req, "X-Forwarded-For");
    if (!xff) {
        return;
    }
    const char *end = xff + strlen(xff);
    while (end > xff) {
        const char *e = end;
        while (e > xff && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }
        const char *s = e;
        while (s > xff && s[-1] != ',') {
            s--;
        }
        const char *b = s;
        while (b < e && (*b == ' ' || *b == '\t')) {
            b++;
        }
        struct net_cidr a;
        char ip[INET6_ADDRSTRLEN];
        if (e <= b || (size_t)(e - b) >= sizeof ip || !net_cidr_parse(b, (size_t)(e - b), &a)
            || a.bits != (a.family == AF_INET ? 32u : 128u)) {
            return; /* garbage: keep what is known */
        }
        memcpy(ip, b, (size_t)(e - b));
        ip[e - b] = '\0';
        (void)snprintf(req->client_ip, sizeof req->client_ip, "%s", ip);
        if (!net_proxy_trusted(srv, ip)) {
            return;
        }
        end = s > xff ? s - 1 : xff;
    }
}

/* ---- per request ---- */

/* Server request ids are "s-<instance>-<counter>"; a client's own id is
 * kept as sent unless it enters that namespace, when it gets a "c-"
 * prefix: no client can make its rows look like another request's. */
static void net_request_id(struct net_server *srv, struct net_req *req)
{
    const char *h = net_req_header(req, "X-Request-Id");
    if (h && net_token_ok(h, NET_REQUEST_ID_MAX, net_reqid_char)) {
        (void)snprintf(req->request_id, sizeof req->request_id, "%s%s",
                       strncmp(h, "s-", 2) == 0 ? "c-" : "", h);
        return;
    }
    uint64_t n = atomic_fetch_add(&srv->req_seq, 1) + 1;
    (void)snprintf(req->request_id, sizeof req->request_id, "s-%s-%010llx", srv->id_prefix,
                   (unsigned long long)n);
}

/* Splits and decodes the query: "a=1&b&c=" -> (a,"1") (b,"") (c,""). An
 * empty piece ("a=1&&b") is skipped. */
static ot_err net_query_split(struct net_req *req, const char **bad)
{
    const char *q = req->h.query;
    *bad = NULL;
    if (!q || !*q) {
        return OT_OK;
    }
    size_t n = strlen(q);
    req->qbuf = malloc(n + NET_HTTP_MAX_QUERY * 2 + 2);
    if (!req->qbuf) {
        return OT_E_NOMEM;
    }
    char *o = req->qbuf;
    const char *p = q;
    while (*p) {
        const char *s = p;
        while (*p && *p != '&') {
            p++;
        }
        const char *e = p;
        if (*p == '&') {
            p++;
        }
        if (e == s) {
            continue;
        }
        if (req->nq >= NET_HTTP_MAX_QUERY) {
            *bad = "too many query arguments";
            return OT_E_FORMAT;
        }
        const char *eq = memchr(s, '=', (size_t)(e - s));
        struct net_qarg *a = &req->q[req->nq];
        size_t kl = 0, vl = 0;
        if (net_pct_decode(s, (size_t)((eq ? eq : e) - s), o, &kl, true, false) != OT_OK) {
            *bad = "invalid percent-encoding or NUL in a query argument";
            return OT_E_FORMAT;
        }
        a->key = o;
        a->klen = kl;
        o += kl + 1;
        if (eq) {
            if (net_pct_decode(eq + 1, (size_t)(e - eq - 1), o, &vl, true, false) != OT_OK) {
                *bad = "invalid percent-encoding or NUL in a query argument";
                return OT_E_FORMAT;
            }
        } else {
            *o = '\0';
        }
        a->value = o;
        a->vlen = vl;
        a->has_eq = eq != NULL;
        o += vl + 1;
        req->nq++;
    }
    return OT_OK;
}

/* Finds the route for method + raw path. *path_known: some route has this
 * path with another method (405). The route with the most literal segments
 * wins ("/x/search" before "/x/{id}"). Literal segments compare raw (an
 * encoded byte never matches a literal: "a%3Aimport" is not "a:import");
 * param values are decoded after the match, and *bad is set when one holds
 * an encoded NUL or '/' or a broken escape (400). */
static const struct net_rt *net_match(struct net_server *srv, struct net_req *req, bool *path_known,
                                      char *allow, size_t allow_cap, bool *bad)
{
    *path_known = false;
    *bad = false;
    allow[0] = '\0';
    const char *seg[NET_MAX_SEGS];
    size_t seglen[NET_MAX_SEGS];
    size_t nseg = 0;
    const char *p = req->url;
    if (p[0] != '/' || strlen(p) >= NET_MAX_PATH) {
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
    const char *method = req->is_head ? "GET" : req->method;
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
        if (strcmp(rt->r->method, method) != 0) {
            *path_known = true;
            size_t used = strlen(allow);
            const char *m = rt->r->method;
            if (!strstr(allow, m)) {
                (void)snprintf(allow + used, allow_cap - used, "%s%s", used ? ", " : "", m);
            }
            if (strcmp(m, "GET") == 0 && !strstr(allow, "HEAD")) {
                used = strlen(allow);
                (void)snprintf(allow + used, allow_cap - used, ", HEAD");
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
    size_t ulen = strlen(req->url);
    req->pbuf = malloc(ulen + 1);
    if (!req->pbuf) {
        *bad = true;
        return NULL;
    }
    char *o = req->pbuf;
    req->nparam = 0;
    for (size_t s = 0; s < nseg; s++) {
        if (best->seg[s].lit || req->nparam >= NET_MAX_PARAMS) {
            continue;
        }
        size_t dl = 0;
        if (net_pct_decode(seg[s], seglen[s], o, &dl, false, true) != OT_OK) {
            *bad = true;
            return NULL;
        }
        req->param_name[req->nparam] = best->seg[s].name;
        req->param_val[req->nparam] = o;
        req->nparam++;
        o += dl + 1;
    }
    return best;
}

void net_finish(struct net_req *req)
{
    struct net_server *srv = req->srv;
    struct net_resp *resp = &req->resp;
    double secs = net_mono() - req->t0;
    net_metrics_observe(srv->metrics, req->rt ? req->rt->metrics_idx : srv->metrics_unmatched,
                        resp->status, secs);
    if (ot_log_enabled(OT_LOG_LVL_INFO)) {
        char path[160];
        net_log_safe(path, sizeof path, req->url ? req->url : "-");
        OT_LOG_INFO("req_id=%s ip=%s method=%s path=%s route=%s status=%d ms=%.3f principal=%s",
                    req->request_id, req->client_ip,
                    req->method && net_method_ok(req->method) ? req->method : "?", path,
                    req->rt ? req->rt->r->pattern : "-", resp->status, secs * 1e3,
                    req->authenticated ? req->principal.name : "-");
    }
    if (req->rt && req->rt->r->allow != 0 && srv->cfg.ops.audit) {
        struct net_audit_event ev = {
            .principal = req->authenticated ? &req->principal : NULL,
            .method = req->rt->r->method,
            .route = req->rt->r->pattern,
            .path = req->dpath ? req->dpath : "",
            .status = resp->status,
            .error_code =
                resp->status >= 400 ? (resp->error_code[0] ? resp->error_code : "error") : NULL,
            .request_id = req->request_id,
            .client_ip = req->client_ip,
            .change_audited = req->change_audited,
        };
        srv->cfg.ops.audit(srv->cfg.ops_ctx, &ev);
    }
}

static void net_fail(struct net_req *req, ot_err e, const char *message)
{
    net_resp_error(&req->resp, e, NULL, message, NULL);
}

static void net_retry_after(struct net_req *req, unsigned secs)
{
    char num[24];
    (void)snprintf(num, sizeof num, "%u", secs);
    net_resp_header(&req->resp, "Retry-After", num);
}

/* Authentication, kind check and rate limit for a protected route.
 * Returns true when the request may go on; otherwise the answer is set.
 *
 * Failed authentications are counted per client IP and per presented
 * credential. A credential that failed auth_fail_max times in the window
 * is refused (429) without a look-up. An IP over the limit does not stop
 * valid credentials: they are checked and served (a valid credential never
 * fails, so many clients behind one NAT or proxy are not locked out by one
 * of them); only failing or missing credentials from it get 429 instead
 * of 401. */
static bool net_gate(struct net_req *req)
{
    struct net_server *srv = req->srv;
    const struct net_route *r = req->rt->r;
    double now = net_mono();
    uint64_t ipkey = net_rl_hash(req->client_ip);
    unsigned retry = 0, cretry = 0;
    double win = srv->cfg.auth_fail_window_s;
    bool ip_locked =
        net_rl_window_count(srv->rl_authfail, ipkey, win, now, &retry) >= srv->cfg.auth_fail_max;
    const char *authz = net_req_header(req, "Authorization");
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
    bool have_subject = req->subject[0] != '\0';
    bool via_cookie = false;
    if (!token && !have_subject && req->srv->session_cookie[0] != '\0') {
        token =
            net_cookie_find(req, req->srv->session_cookie, req->cookie_tok, sizeof req->cookie_tok);
        via_cookie = token != NULL;
    }
    uint64_t credkey = 0;
    if (token || have_subject) {
        char k[sizeof req->cookie_tok + sizeof req->subject + 2];
        (void)snprintf(k, sizeof k, "%.*s\n%s", (int)(sizeof req->cookie_tok - 1),
                       token ? token : "", req->subject);
        credkey = net_rl_hash(k);
        ot_mem_wipe(k, sizeof k);
        if (net_rl_window_count(srv->rl_credfail, credkey, win, now, &cretry)
            >= srv->cfg.auth_fail_max) {
            OT_LOG_WARN("req_id=%s ip=%s credential failed too often", req->request_id,
                        req->client_ip);
            net_fail(req, OT_E_RATE_LIMITED, "too many failed authentications; retry later");
            net_retry_after(req, cretry);
            return false;
        }
    }
    ot_err e = OT_E_AUTH;
    if ((token || have_subject) && srv->cfg.ops.authenticate) {
        memset(&req->principal, 0, sizeof req->principal);
        e = srv->cfg.ops.authenticate(srv->cfg.ops_ctx, token, have_subject ? req->subject : NULL,
                                      &req->principal);
        req->principal.name[sizeof req->principal.name - 1] = '\0';
    }
    if (e != OT_OK) {
        if (e == OT_E_AUTH) {
            net_rl_window_add(srv->rl_authfail, ipkey, win, now);
            if (credkey) {
                net_rl_window_add(srv->rl_credfail, credkey, win, now);
            }
            atomic_fetch_add(&srv->auth_failures, 1);
            OT_LOG_INFO("req_id=%s ip=%s authentication failed (%s)", req->request_id,
                        req->client_ip, token ? "bad token" : "no credentials");
        } else {
            OT_LOG_ERROR("req_id=%s authenticate: %s", req->request_id, ot_strerror(e));
        }
        if (e == OT_E_AUTH && ip_locked) {
            OT_LOG_WARN("req_id=%s ip=%s too many failed authentications", req->request_id,
                        req->client_ip);
            net_fail(req, OT_E_RATE_LIMITED, "too many failed authentications; retry later");
            net_retry_after(req, retry);
            return false;
        }
        /* A store that is down answers 503, so clients retry; anything
         * else unexpected is ours (500). */
        ot_err shown = e;
        if (e != OT_E_AUTH && e != OT_E_DB && e != OT_E_TIMEOUT) {
            shown = OT_E_INTERNAL;
        }
        net_fail(req, shown, e == OT_E_AUTH ? "missing or invalid credentials" : NULL);
        if (e == OT_E_AUTH) {
            net_resp_header(&req->resp, "WWW-Authenticate", "Bearer");
        }
        return false;
    }
    req->authenticated = true;
    req->token = token;
    if (via_cookie && strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        char want[NET_CSRF_LEN + 1];
        const char *got = net_req_header(req, "X-CSRF-Token");
        bool ok = net_csrf_token(token, want, sizeof want) == OT_OK && got != NULL
                  && strlen(got) == NET_CSRF_LEN && CRYPTO_memcmp(got, want, NET_CSRF_LEN) == 0;
        if (!ok) {
            OT_LOG_WARN("req_id=%s ip=%s session request without its CSRF token", req->request_id,
                        req->client_ip);
            net_resp_error(&req->resp, OT_E_FORBIDDEN, "csrf",
                           "missing or wrong X-CSRF-Token for this session", NULL);
            return false;
        }
    }
    if ((req->principal.kind & r->allow) == 0) {
        net_fail(req, OT_E_FORBIDDEN, "principal kind not allowed here");
        return false;
    }
    if (srv->cfg.rate_per_s > 0) {
        uint64_t key = ((uint64_t)req->principal.kind << 56) ^ (uint64_t)req->principal.id;
        if (!net_rl_take(srv->rl_principal, key, srv->cfg.rate_per_s, srv->cfg.rate_burst, now,
                         &retry)) {
            net_fail(req, OT_E_RATE_LIMITED, NULL);
            net_retry_after(req, retry);
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

/* The request hash of an Idempotency-Key (http.h): SHA-256 over
 *
 *   method NUL path [ "?" query ] NUL body
 *
 * where path is the percent-decoded request path with '%' and '?'
 * percent-encoded again and query lists the query arguments in the order
 * received, "key" (no '=' in the request) or "key=value", joined by '&',
 * each key and value (decoded, with their lengths) percent-encoded but for
 * the unreserved characters. So a replay with other arguments, or the same
 * ones in another order, is another request (422), while an argument
 * written another way (%61 for a) is the same. The encoding is
 * unambiguous: the first '?' ends the path and the first NUL after it the
 * query. A request without arguments hashes as method NUL path NUL body. */
static ot_err net_req_hash(struct net_req *req, uint8_t out[32])
{
    ot_err err = OT_OK;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned n = 0;
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1
              && EVP_DigestUpdate(md, req->method, strlen(req->method) + 1) == 1
              && net_hash_pct(md, req->dpath, strlen(req->dpath), false);
    for (size_t i = 0; ok && i < req->nq; i++) {
        const struct net_qarg *a = &req->q[i];
        ok = EVP_DigestUpdate(md, i == 0 ? "?" : "&", 1) == 1
             && net_hash_pct(md, a->key, a->klen, true)
             && (!a->has_eq
                 || (EVP_DigestUpdate(md, "=", 1) == 1
                     && net_hash_pct(md, a->value, a->vlen, true)));
    }
    if (!ok || EVP_DigestUpdate(md, "", 1) != 1
        || (req->body.len > 0 && EVP_DigestUpdate(md, req->body.data, req->body.len) != 1)
        || EVP_DigestFinal_ex(md, out, &n) != 1 || n != 32) {
        err = OT_E_CRYPTO;
    }
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

void net_inflight(struct net_server *srv, int delta)
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

/* Everything before the handler; false when an answer is set. */
static bool net_prepare(struct net_req *req)
{
    struct net_server *srv = req->srv;
    const char *bad = NULL;
    req->method = req->h.method;
    req->is_head = strcmp(req->method, "HEAD") == 0;
    net_client_addr(req);
    net_request_id(srv, req);
    size_t plen = req->h.path_len;
    req->url = malloc(plen + 1);
    req->dpath = malloc(plen + 1);
    if (!req->url || !req->dpath) {
        net_fail(req, OT_E_NOMEM, NULL);
        return false;
    }
    memcpy(req->url, req->h.path, plen);
    req->url[plen] = '\0';
    size_t dl = 0;
    if (net_pct_decode(req->url, plen, req->dpath, &dl, false, false) != OT_OK) {
        net_fail(req, OT_E_ARG, "invalid percent-encoding or NUL in the path");
        return false;
    }
    ot_err e = net_query_split(req, &bad);
    if (e != OT_OK) {
        net_fail(req, e == OT_E_FORMAT ? OT_E_ARG : e, bad);
        return false;
    }
    if (atomic_load(&srv->stopping)) {
        req->close = true;
        net_resp_text(&req->resp, 503, NULL, "shutting down\n");
        return false;
    }
    bool known = false, badseg = false;
    char allow[64];
    req->rt = net_match(srv, req, &known, allow, sizeof allow, &badseg);
    if (!req->rt) {
        if (badseg) {
            net_fail(req, OT_E_ARG, "invalid path segment (encoded NUL or '/', or bad escape)");
        } else if (known) {
            net_resp_error(&req->resp, OT_E_UNSUPPORTED, "method_not_allowed", "method not allowed",
                           NULL);
            net_resp_header(&req->resp, "Allow", allow);
        } else {
            net_fail(req, OT_E_NOT_FOUND, "no such resource");
        }
        return false;
    }
    if (req->too_large) {
        req->close = true;
        net_fail(req, OT_E_LIMIT, "request body too large");
        return false;
    }
    if (req->rt->r->allow != 0 && !net_gate(req)) {
        return false;
    }
    if (req->rt->r->idempotent) {
        const char *k = net_req_header(req, NET_IDEM_KEY_HEADER);
        if (!k || !net_token_ok(k, NET_IDEM_KEY_MAX, net_idem_char)) {
            net_resp_error(&req->resp, OT_E_ARG, "invalid_request",
                           k ? "Idempotency-Key must be 1-128 printable characters"
                             : "Idempotency-Key header required",
                           NET_IDEM_KEY_HEADER);
            return false;
        }
        (void)snprintf(req->idem_key, sizeof req->idem_key, "%s", k);
    }
    return true;
}

void net_process(struct net_req *req)
{
    if (net_prepare(req)) {
        net_run_handler(req);
    }
    if (!req->resp.set) {
        OT_LOG_ERROR("req_id=%s handler gave no answer", req->request_id);
        net_resp_error(&req->resp, OT_E_INTERNAL, NULL, NULL, NULL);
    }
}

static ot_err net_put(struct ot_buf *b, const char *s)
{
    return ot_buf_append(b, s, strlen(s));
}

static ot_err net_put_hdr(struct ot_buf *b, const char *name, const char *value)
{
    ot_err err = OT_OK;
    OT_TRY(net_put(b, name));
    OT_TRY(net_put(b, ": "));
    /* Values come from our handlers; never let one split the head. */
    for (const char *p = value; *p; p++) {
        char c = (*p == '\r' || *p == '\n') ? ' ' : *p;
        OT_TRY(ot_buf_append(b, &c, 1));
    }
    OT_TRY(net_put(b, "\r\n"));
out:
    return err;
}

ot_err net_resp_serialize(struct net_req *req, struct ot_buf *out)
{
    ot_err err = OT_OK;
    struct net_resp *resp = &req->resp;
    char line[96];
    bool stream = resp->stream != NULL;
    if (atomic_load(&req->srv->stopping)) {
        req->close = true;
    }
    (void)snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", resp->status,
                   http_err_reason(resp->status));
    OT_TRY(net_put(out, line));
    OT_TRY(net_put_hdr(out, "Content-Type", resp->ctype));
    if (!stream) {
        (void)snprintf(line, sizeof line, "%zu", resp->len);
        if (resp->status != 204) {
            OT_TRY(net_put_hdr(out, "Content-Length", line));
        }
    }
    OT_TRY(net_put_hdr(out, "X-Request-Id", req->request_id));
    OT_TRY(net_put_hdr(out, "Cache-Control", "no-store"));
    for (size_t i = 0; i < resp->nhdr; i++) {
        OT_TRY(net_put_hdr(out, resp->hdr[i].name, resp->hdr[i].value));
    }
    if (req->close || stream) {
        OT_TRY(net_put_hdr(out, "Connection", "close"));
    }
    OT_TRY(net_put(out, "\r\n"));
    if (!req->is_head && !stream && resp->len > 0 && resp->status != 204) {
        OT_TRY(ot_buf_append(out, resp->body, resp->len));
    }
out:
    return err;
}

ot_err net_plain_error(struct ot_buf *out, int status, const char *code, const char *msg)
{
    char body[256], head[256];
    int bl =
        snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, msg);
    if (bl < 0 || (size_t)bl >= sizeof body) {
        return OT_E_INTERNAL;
    }
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                      status, http_err_reason(status), bl);
    if (hl < 0 || (size_t)hl >= sizeof head) {
        return OT_E_INTERNAL;
    }
    ot_err err = ot_buf_append(out, head, (size_t)hl);
    return err == OT_OK ? ot_buf_append(out, body, (size_t)bl) : err;
}

void net_req_free(struct net_req *req)
{
    if (!req) {
        return;
    }
    net_resp_clear(&req->resp);
    ot_buf_free(&req->body);
    ot_mem_wipe(&req->principal, sizeof req->principal);
    if (req->head) {
        ot_mem_wipe(req->head, strlen(req->head));
    }
    free(req->head);
    free(req->url);
    free(req->dpath);
    free(req->pbuf);
    free(req->qbuf);
    free(req);
}

ot_err net_server_start(struct net_server *srv)
{
    if (!srv || srv->io) {
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
    atomic_store(&srv->stopping, false);
    ot_err err = net_io_start(srv);
    if (err != OT_OK) {
        return err;
    }
    OT_LOG_INFO("listening on %s port %u (%s, %u threads, %u connections, %u per IP)", srv->host,
                (unsigned)srv->port,
                srv->ssl_ctx ? (srv->cfg.client_ca ? "tls+mtls" : "tls") : "plain http",
                srv->cfg.threads, srv->cfg.max_conns, srv->cfg.max_conns_per_ip);
    return OT_OK;
}

void net_server_stop(struct net_server *srv, unsigned grace_ms)
{
    if (!srv || !srv->io) {
        return;
    }
    atomic_store(&srv->stopping, true);
    net_io_stop(srv, grace_ms);
    OT_LOG_INFO("stopped");
}

void net_server_free(struct net_server *srv)
{
    if (!srv) {
        return;
    }
    net_server_stop(srv, 0);
    net_rl_free(srv->rl_credfail);
    net_rl_free(srv->rl_authfail);
    net_rl_free(srv->rl_principal);
    net_metrics_free(srv->metrics);
    SSL_CTX_free(srv->ssl_ctx);
    free(srv->host);
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->idem_mu);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}
