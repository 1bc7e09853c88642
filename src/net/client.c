/* HTTP client over libcurl (one easy handle per client, reused so that
 * connections and TLS sessions are kept alive between calls). */
#include "net/client.h"

#define OT_LOG_COMPONENT "net.client"
#include "core/buf.h"
#include "core/log.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define NET_CLIENT_DEFAULT_MAX ((size_t)16 * 1024 * 1024)
#define NET_CLIENT_URL_MAX     4096

struct net_client {
    CURL *h;
    char *base_url;
    char *auth_header; /* "Authorization: Bearer ..." (wiped at free) */
    char *ca_file;
    char *client_cert;
    char *client_key;
    bool insecure;
    unsigned timeout_ms;
    unsigned connect_timeout_ms;
    size_t max_body;
    const volatile sig_atomic_t *cancel;
};

struct net_client_rx {
    struct ot_buf body;
    bool too_large;
    struct net_client_resp *out;
};

static char *net_client_dup(const char *s, bool *fail)
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

ot_err net_client_new(const struct net_client_cfg *cfg, struct net_client **out)
{
    *out = NULL;
    if (!cfg || !cfg->base_url || strlen(cfg->base_url) >= NET_CLIENT_URL_MAX / 2) {
        return OT_E_ARG;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return OT_E_INTERNAL;
    }
    struct net_client *c = calloc(1, sizeof *c);
    if (!c) {
        return OT_E_NOMEM;
    }
    bool fail = false;
    c->base_url = net_client_dup(cfg->base_url, &fail);
    size_t bl = c->base_url ? strlen(c->base_url) : 0;
    while (bl > 0 && c->base_url[bl - 1] == '/') {
        c->base_url[--bl] = '\0';
    }
    c->ca_file = net_client_dup(cfg->ca_file, &fail);
    c->client_cert = net_client_dup(cfg->client_cert, &fail);
    c->client_key = net_client_dup(cfg->client_key, &fail);
    if (cfg->token) {
        size_t n = strlen(cfg->token) + sizeof "Authorization: Bearer ";
        c->auth_header = malloc(n);
        if (!c->auth_header) {
            fail = true;
        } else {
            (void)snprintf(c->auth_header, n, "Authorization: Bearer %s", cfg->token);
        }
    }
    c->insecure = cfg->insecure;
    c->cancel = cfg->cancel;
    c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 30000;
    c->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 5000;
    c->max_body = cfg->max_body ? cfg->max_body : NET_CLIENT_DEFAULT_MAX;
    c->h = curl_easy_init();
    if (fail || !c->h) {
        net_client_free(c);
        return OT_E_NOMEM;
    }
    *out = c;
    return OT_OK;
}

void net_client_free(struct net_client *c)
{
    if (!c) {
        return;
    }
    if (c->h) {
        curl_easy_cleanup(c->h);
    }
    if (c->auth_header) {
        ot_mem_wipe(c->auth_header, strlen(c->auth_header));
    }
    free(c->auth_header);
    free(c->base_url);
    free(c->ca_file);
    free(c->client_cert);
    free(c->client_key);
    free(c);
}

void net_client_resp_clear(struct net_client_resp *r)
{
    if (!r) {
        return;
    }
    free(r->body);
    json_free(r->json);
    memset(r, 0, sizeof *r);
    r->retry_after = -1;
}

static size_t net_client_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct net_client_rx *rx = ud;
    size_t n = size * nmemb;
    if (ot_buf_append(&rx->body, ptr, n) != OT_OK) {
        rx->too_large = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    return n;
}

/* Ends the wait for an answer once the caller is stopping (cfg.cancel):
 * only after the whole body went, so the server has what was sent. */
static int net_client_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                               curl_off_t ulnow)
{
    const struct net_client *c = ud;

    (void)dltotal;
    (void)dlnow;
    return *c->cancel != 0 && ulnow >= ultotal ? 1 : 0;
}

/* Copies a header value (trimmed) when the line is "name: value". */
static bool net_client_hdr(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (n <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':') {
        return false;
    }
    const char *v = line + nl + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) {
        end--;
    }
    size_t len = (size_t)(end - v);
    if (len >= cap) {
        len = cap - 1;
    }
    memcpy(out, v, len);
    out[len] = '\0';
    return true;
}

static size_t net_client_header(char *buf, size_t size, size_t nitems, void *ud)
{
    struct net_client_rx *rx = ud;
    size_t n = size * nitems;
    char tmp[32];
    struct net_client_resp *o = rx->out;
    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        o->headers_len = 0; /* a new answer (after 100 Continue or a redirect) */
    }
    if (n <= sizeof o->headers - o->headers_len) {
        memcpy(o->headers + o->headers_len, buf, n);
        o->headers_len += n;
    }
    (void)net_client_hdr(buf, n, "X-Request-Id", rx->out->request_id, sizeof rx->out->request_id);
    if (net_client_hdr(buf, n, "Retry-After", tmp, sizeof tmp)) {
        char *end = NULL;
        long v = strtol(tmp, &end, 10);
        rx->out->retry_after = (end != tmp && v >= 0) ? v : -1;
    }
    return n;
}

bool net_client_resp_header(const struct net_client_resp *r, const char *name, char *out,
                            size_t cap)
{
    size_t off = 0;

    if (!r || !name || !out || cap == 0) {
        return false;
    }
    while (off < r->headers_len) {
        const char *line = r->headers + off;
        const char *nl = memchr(line, '\n', r->headers_len - off);
        size_t n = nl ? (size_t)(nl - line) + 1 : r->headers_len - off;
        if (net_client_hdr(line, n, name, out, cap)) {
            return true;
        }
        off += n;
    }
    return false;
}

static void net_client_error_body(struct net_client_resp *r)
{
    if (!r->json) {
        return;
    }
    const json_t *e = NULL;
    if (json_opt_obj(r->json, "error", &e, NULL) != OT_OK || !e) {
        return;
    }
    const char *s = NULL;
    if (json_opt_str(e, "code", 0, sizeof r->error_code - 1, &s, NULL) == OT_OK && s) {
        (void)snprintf(r->error_code, sizeof r->error_code, "%s", s);
    }
    if (json_opt_str(e, "field", 0, sizeof r->error_field - 1, &s, NULL) == OT_OK && s) {
        (void)snprintf(r->error_field, sizeof r->error_field, "%s", s);
    }
    if (json_opt_str(e, "message", 0, 4096, &s, NULL) == OT_OK && s) {
        (void)snprintf(r->error_message, sizeof r->error_message, "%s", s);
    }
}

ot_err net_client_request_raw(struct net_client *c, const char *method, const char *path,
                              const char *content_type, const void *body, size_t body_len,
                              const char *const *headers, struct net_client_resp *out)
{
    ot_err err = OT_OK;
    struct curl_slist *hl = NULL;
    struct net_client_rx rx;
    char url[NET_CLIENT_URL_MAX];
    if (!out) {
        return OT_E_ARG;
    }
    memset(out, 0, sizeof *out);
    out->retry_after = -1;
    if (!c || !method || !path || (body_len > 0 && !body)) {
        return OT_E_ARG;
    }
    ot_buf_init(&rx.body, c->max_body);
    rx.too_large = false;
    rx.out = out;
    int w = snprintf(url, sizeof url, "%s%s", c->base_url, path);
    CURL *h = c->h;
    if (w < 0 || (size_t)w >= sizeof url) {
        OT_FAIL(OT_E_ARG);
    }
    curl_easy_reset(h);
    (void)curl_easy_setopt(h, CURLOPT_ERRORBUFFER, out->transport_error);
    (void)curl_easy_setopt(h, CURLOPT_URL, url);
    (void)curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    (void)curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    (void)curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    (void)curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    (void)curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, net_client_write);
    (void)curl_easy_setopt(h, CURLOPT_WRITEDATA, &rx);
    (void)curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, net_client_header);
    (void)curl_easy_setopt(h, CURLOPT_HEADERDATA, &rx);
    (void)curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_body);
    if (c->cancel != NULL) {
        (void)curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, net_client_progress);
        (void)curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
        (void)curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    }
    if (c->ca_file) {
        (void)curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    }
    if (c->client_cert) {
        (void)curl_easy_setopt(h, CURLOPT_SSLCERT, c->client_cert);
        (void)curl_easy_setopt(h, CURLOPT_SSLKEY, c->client_key);
    }
    if (c->insecure) {
        (void)curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        (void)curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (strcmp(method, "GET") == 0) {
        (void)curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        (void)curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
        (void)curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0
        || strcmp(method, "PATCH") == 0) {
        (void)curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        (void)curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    char ct[128];
    if (content_type) {
        (void)snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
        struct curl_slist *t = curl_slist_append(hl, ct);
        if (!t) {
            OT_FAIL(OT_E_NOMEM);
        }
        hl = t;
    }
    struct curl_slist *t = curl_slist_append(hl, "Accept: application/json");
    if (!t) {
        OT_FAIL(OT_E_NOMEM);
    }
    hl = t;
    /* No "Expect: 100-continue" round trip for small bodies. */
    t = curl_slist_append(hl, "Expect:");
    if (!t) {
        OT_FAIL(OT_E_NOMEM);
    }
    hl = t;
    if (c->auth_header) {
        t = curl_slist_append(hl, c->auth_header);
        if (!t) {
            OT_FAIL(OT_E_NOMEM);
        }
        hl = t;
    }
    for (size_t i = 0; headers && headers[i]; i++) {
        t = curl_slist_append(hl, headers[i]);
        if (!t) {
            OT_FAIL(OT_E_NOMEM);
        }
        hl = t;
    }
    (void)curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        if (rx.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
            OT_FAIL(OT_E_LIMIT);
        }
        if (out->transport_error[0] == '\0') {
            (void)snprintf(out->transport_error, sizeof out->transport_error, "%s",
                           curl_easy_strerror(rc));
        }
        OT_LOG_DEBUG("%s %s: %s", method, url, out->transport_error);
        OT_FAIL(rc == CURLE_OPERATION_TIMEDOUT    ? OT_E_TIMEOUT
                : rc == CURLE_ABORTED_BY_CALLBACK ? OT_E_STATE
                                                  : OT_E_IO);
    }
    (void)curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    OT_TRY(ot_buf_append_u8(&rx.body, 0));
    out->body_len = rx.body.len - 1;
    out->body = (char *)rx.body.data;
    rx.body.data = NULL;
    char *rct = NULL;
    (void)curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &rct);
    if (rct && strncasecmp(rct, "application/json", 16) == 0 && out->body_len > 0) {
        (void)json_parse(out->body, out->body_len, c->max_body, &out->json, NULL);
        net_client_error_body(out);
    }
out:
    /* The header list holds the bearer token: wipe it before it is freed. */
    for (struct curl_slist *p = hl; p; p = p->next) {
        ot_mem_wipe(p->data, strlen(p->data));
    }
    curl_slist_free_all(hl);
    (void)curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    (void)curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    ot_buf_free(&rx.body);
    return err;
}

ot_err net_client_request(struct net_client *c, const char *method, const char *path,
                          const json_t *body, const char *const *headers,
                          struct net_client_resp *out)
{
    char *s = NULL;
    size_t n = 0;
    if (body) {
        ot_err e = json_serialize(body, &s, &n);
        if (e != OT_OK) {
            memset(out, 0, sizeof *out);
            out->retry_after = -1;
            return e;
        }
    }
    ot_err e = net_client_request_raw(c, method, path, body ? "application/json" : NULL, s, n,
                                      headers, out);
    free(s);
    return e;
}

/* ---- SSE ---- */

static size_t net_sse_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct net_sse_rx *rx = ud;
    size_t n = size * nmemb;
    return net_sse_rx_feed(rx, ptr, n) ? n : 0;
}

ot_err net_client_sse(struct net_client *c, const char *path, const char *last_event_id,
                      const struct net_sse_opts *opts, net_sse_fn fn, void *ctx, char *last_out,
                      size_t last_cap)
{
    if (!c || !path || !fn || (last_event_id && strlen(last_event_id) > NET_SSE_ID_MAX)) {
        return OT_E_ARG;
    }
    unsigned retry_ms = opts && opts->retry_ms ? opts->retry_ms : 1000;
    unsigned max_reconnects = opts ? opts->max_reconnects : 0;
    unsigned idle_s = opts && opts->idle_timeout_s ? opts->idle_timeout_s : 60;
    struct net_sse_rx rx;
    net_sse_rx_init(&rx, c->max_body, fn, ctx);
    if (last_event_id) {
        (void)snprintf(rx.last_id, sizeof rx.last_id, "%s", last_event_id);
    }
    char url[NET_CLIENT_URL_MAX];
    int w = snprintf(url, sizeof url, "%s%s", c->base_url, path);
    if (w < 0 || (size_t)w >= sizeof url) {
        return OT_E_ARG;
    }
    ot_err err = OT_OK;
    unsigned fails = 0;
    for (;;) {
        unsigned seen = rx.events;
        struct curl_slist *hl = NULL;
        char lh[NET_SSE_ID_MAX + 32];
        char errbuf[CURL_ERROR_SIZE] = "";
        CURL *h = c->h;
        curl_easy_reset(h);
        (void)curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        (void)curl_easy_setopt(h, CURLOPT_URL, url);
        (void)curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        (void)curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        (void)curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
        /* No total time: a stream lasts. A stream silent for idle_s (no
         * event, no heartbeat) is dead. */
        (void)curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        (void)curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)idle_s);
        (void)curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
        (void)curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, net_sse_write);
        (void)curl_easy_setopt(h, CURLOPT_WRITEDATA, &rx);
        (void)curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        if (c->ca_file) {
            (void)curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
        }
        if (c->client_cert) {
            (void)curl_easy_setopt(h, CURLOPT_SSLCERT, c->client_cert);
            (void)curl_easy_setopt(h, CURLOPT_SSLKEY, c->client_key);
        }
        if (c->insecure) {
            (void)curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
            (void)curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        bool ok = (hl = curl_slist_append(NULL, "Accept: text/event-stream")) != NULL;
        if (ok && c->auth_header) {
            struct curl_slist *t = curl_slist_append(hl, c->auth_header);
            ok = t != NULL;
            hl = t ? t : hl;
        }
        if (ok && rx.last_id[0]) {
            (void)snprintf(lh, sizeof lh, "Last-Event-ID: %s", rx.last_id);
            struct curl_slist *t = curl_slist_append(hl, lh);
            ok = t != NULL;
            hl = t ? t : hl;
        }
        CURLcode rc = CURLE_OUT_OF_MEMORY;
        long status = 0;
        if (ok) {
            (void)curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
            rc = curl_easy_perform(h);
            (void)curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        }
        for (struct curl_slist *p = hl; p; p = p->next) {
            ot_mem_wipe(p->data, strlen(p->data));
        }
        curl_slist_free_all(hl);
        (void)curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
        (void)curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
        /* A partial event of a broken connection is dropped: the server
         * sends it again after the last complete id. */
        net_sse_rx_reset(&rx);
        if (rx.stop) {
            err = OT_OK;
            break;
        }
        if (rx.too_big) {
            err = OT_E_LIMIT;
            break;
        }
        if (!ok) {
            err = OT_E_NOMEM;
            break;
        }
        if (status != 0 && status != 200) {
            OT_LOG_DEBUG("GET %s: HTTP %ld", url, status);
            err = status == 401   ? OT_E_AUTH
                  : status == 403 ? OT_E_FORBIDDEN
                  : status == 404 ? OT_E_NOT_FOUND
                                  : OT_E_PROTOCOL;
            break;
        }
        OT_LOG_DEBUG("GET %s: stream ended (%s); last id '%s'", url,
                     errbuf[0] ? errbuf : curl_easy_strerror(rc), rx.last_id);
        fails = rx.events > seen ? 0 : fails + 1;
        if (fails > max_reconnects) {
            err = rc == CURLE_OPERATION_TIMEDOUT ? OT_E_TIMEOUT : OT_E_CLOSED;
            break;
        }
        struct timespec ts = {(time_t)(retry_ms / 1000), (long)(retry_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (last_out && last_cap > 0) {
        (void)snprintf(last_out, last_cap, "%s", rx.last_id);
    }
    net_sse_rx_free(&rx);
    return err;
}
