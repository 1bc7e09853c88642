/* Client of the tsm service and the host administration API (tsm_client.h). */
#include "client/tsm_client.h"

#include "core/buf.h"
#include "core/utf8.h"
#include "net/client.h"
#include "svc/kit.h"

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TSM_CLIENT_PATH_MAX 2048
#define TSM_CLIENT_HOST_MAX 256

struct tsm_client {
    struct net_client *net;
    char host[TSM_CLIENT_HOST_MAX]; /* host[:port] of the URL, for messages */
    char ca_file[512];              /* the CA file (escaped), "" for the system's */
    bool https;
};

/* ---- escaping ----------------------------------------------------------- */

/* Untrusted text (a server's, libcurl's, a file name) made printable. */
static void tsm_client_esc_str(const char *s, char *out, size_t cap)
{
    (void)ot_utf8_escape(s, s ? strlen(s) : 0, out, cap, true, NULL, NULL);
}

/* ---- profile files ------------------------------------------------------ */

static const char *const tsm_client_profile_keys[] = {"url", "token", "ca", "cert", "key"};
#define TSM_CLIENT_PROFILE_NKEYS \
    (sizeof tsm_client_profile_keys / sizeof tsm_client_profile_keys[0])

static char *tsm_client_profile_dst(struct tsm_client_profile *p, size_t k)
{
    char *dst[TSM_CLIENT_PROFILE_NKEYS] = {p->url, p->token, p->ca, p->cert, p->key};
    return dst[k];
}

static char *tsm_client_trim(char *s)
{
    size_t n;

    while (*s == ' ' || *s == '\t') {
        s++;
    }
    n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

/* The value after '=' (see tsm_client_profile_parse); NULL with *why set. */
static char *tsm_client_profile_value(char *v, const char **why)
{
    char *q;

    v = tsm_client_trim(v);
    if (v[0] == '"') {
        q = strchr(v + 1, '"');
        if (q == NULL) {
            *why = "unterminated quote";
            return NULL;
        }
        *q = '\0';
        q = tsm_client_trim(q + 1);
        if (q[0] != '\0' && q[0] != '#' && q[0] != ';') {
            *why = "text after the closing quote";
            return NULL;
        }
        return v + 1;
    }
    for (q = v; *q != '\0'; q++) {
        if ((*q == '#' || *q == ';') && q > v && (q[-1] == ' ' || q[-1] == '\t')) {
            *q = '\0';
            break;
        }
    }
    v = tsm_client_trim(v);
    if (strchr(v, '"') != NULL) {
        *why = "a quote inside a bare value (quote the whole value)";
        return NULL;
    }
    return v;
}

/* One "[...]" line (s trimmed); names: the profiles seen so far. */
static const char *tsm_client_profile_section(char *s, char (*names)[256], size_t *nnames,
                                              const char *want, bool *mine)
{
    static const char name_chars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
    char *end = strchr(s, ']');
    const char *rest = end != NULL ? tsm_client_trim(end + 1) : NULL;
    char *name;

    if (end == NULL || (rest[0] != '\0' && rest[0] != '#' && rest[0] != ';')) {
        return "malformed section line (want [profile NAME])";
    }
    *end = '\0';
    name = tsm_client_trim(s + 1);
    if (strncmp(name, "profile", 7) != 0 || (name[7] != ' ' && name[7] != '\t')) {
        return "unknown section (want [profile NAME])";
    }
    name = tsm_client_trim(name + 8);
    if (name[0] == '\0' || strlen(name) > 255 || strspn(name, name_chars) != strlen(name)) {
        return "a profile name is 1..255 of A-Z a-z 0-9 . _ -";
    }
    for (size_t k = 0; k < *nnames; k++) {
        if (strcmp(names[k], name) == 0) {
            return "profile given twice";
        }
    }
    if (*nnames == TSM_CLIENT_PROFILES_MAX) {
        return "too many profiles";
    }
    (void)snprintf(names[(*nnames)++], 256, "%s", name);
    *mine = strcmp(name, want) == 0;
    return NULL;
}

/* One "KEY = VALUE" line (s trimmed). */
static const char *tsm_client_profile_kv(char *s, unsigned *seen, bool mine,
                                         struct tsm_client_profile *p)
{
    const char *why = NULL;
    char *eq = strchr(s, '=');
    char *v;
    size_t k;

    if (eq == NULL) {
        return "expected KEY = VALUE or [profile NAME]";
    }
    *eq = '\0';
    s = tsm_client_trim(s);
    for (k = 0; k < TSM_CLIENT_PROFILE_NKEYS; k++) {
        if (strcmp(s, tsm_client_profile_keys[k]) == 0) {
            break;
        }
    }
    if (k == TSM_CLIENT_PROFILE_NKEYS) {
        return "unknown key (url, token, ca, cert, key)";
    }
    if ((*seen & (1u << k)) != 0) {
        return "key given twice in this profile";
    }
    *seen |= 1u << k;
    v = tsm_client_profile_value(eq + 1, &why);
    if (v == NULL) {
        return why;
    }
    if (strlen(v) >= TSM_CLIENT_PROFILE_VALUE_MAX) {
        return "value too long";
    }
    if (k == 1 && v[0] != '\0') {
        p->has_token = true; /* whichever profile: the file holds a secret */
    }
    if (mine) {
        (void)snprintf(tsm_client_profile_dst(p, k), TSM_CLIENT_PROFILE_VALUE_MAX, "%s", v);
    }
    return NULL;
}

ot_err tsm_client_profile_parse(const char *text, size_t len, const char *want,
                                struct tsm_client_profile *p, size_t *line, const char **why)
{
    char buf[TSM_CLIENT_PROFILE_LINE_MAX + 1];
    char(*names)[256] = NULL;
    size_t nnames = 0;
    unsigned seen = 0;
    bool in = false;
    bool mine = false;
    size_t pos = 0;
    ot_err err = OT_OK;

    memset(p, 0, sizeof *p);
    *line = 0;
    *why = NULL;
    names = calloc(TSM_CLIENT_PROFILES_MAX, sizeof *names);
    if (names == NULL) {
        *why = "out of memory";
        return OT_E_NOMEM;
    }
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - (text + pos)) : len - pos;
        char *s;
        ++*line;
        if (n > TSM_CLIENT_PROFILE_LINE_MAX) {
            *why = "line longer than 4096 bytes";
            break;
        }
        if (memchr(text + pos, '\0', n) != NULL) {
            *why = "NUL byte";
            break;
        }
        memcpy(buf, text + pos, n);
        buf[n] = '\0';
        pos += n + (nl != NULL ? 1 : 0);
        s = tsm_client_trim(buf);
        if (s[0] == '\0' || s[0] == '#' || s[0] == ';') {
            continue;
        }
        if (s[0] == '[') {
            *why = tsm_client_profile_section(s, names, &nnames, want, &mine);
            if (*why != NULL) {
                break;
            }
            p->found = p->found || mine;
            in = true;
            seen = 0;
            continue;
        }
        if (!in) {
            *why = strchr(s, '=') != NULL ? "KEY = VALUE before any [profile NAME]"
                                          : "expected KEY = VALUE or [profile NAME]";
            break;
        }
        *why = tsm_client_profile_kv(s, &seen, mine, p);
        if (*why != NULL) {
            break;
        }
    }
    ot_mem_wipe(buf, sizeof buf);
    free(names);
    if (*why != NULL) {
        /* Keep nothing of a file refused, tokens least of all. */
        ot_mem_wipe(p, sizeof *p);
        err = OT_E_FORMAT;
    }
    return err;
}

/* ---- errors ------------------------------------------------------------- */

static void tsm_client_err_reset(struct tsm_client_err *e)
{
    memset(e, 0, sizeof *e);
    e->retry_after = -1;
}

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static ot_err
tsm_client_fail_set(struct tsm_client_err *e, enum tsm_client_fail fail, ot_err err,
                    const char *fmt, ...)
{
    va_list ap;

    e->fail = fail;
    e->err = err;
    va_start(ap, fmt);
    (void)vsnprintf(e->text, sizeof e->text, fmt, ap);
    va_end(ap);
    return err;
}

/* Fills e from an answer that is not a success. */
static ot_err tsm_client_http_fail(const struct tsm_client *c, const char *method, const char *path,
                                   const struct net_client_resp *r, struct tsm_client_err *e)
{
    char p[512];

    e->status = r->status;
    tsm_client_esc_str(r->error_code, e->code, sizeof e->code);
    tsm_client_esc_str(r->error_field, e->field, sizeof e->field);
    tsm_client_esc_str(r->error_message, e->message, sizeof e->message);
    tsm_client_esc_str(r->request_id, e->request_id, sizeof e->request_id);
    tsm_client_esc_str(path, p, sizeof p);
    if (e->code[0] == '\0') {
        /* Not our error body (a proxy, another server): show its start. */
        char body[128];
        (void)ot_utf8_escape(r->body, r->body ? (r->body_len < 96 ? r->body_len : 96) : 0, body,
                             sizeof body, true, NULL, NULL);
        return tsm_client_fail_set(e, TSM_CLIENT_HTTP, OT_E_IO,
                                   "%s %s on %s: HTTP %ld, not an API error answer: \"%s\"", method,
                                   p, c->host, r->status, body);
    }
    char retry[48] = "";
    e->retry_after = r->retry_after;
    if (r->retry_after >= 0) {
        (void)snprintf(retry, sizeof retry, "; retry after %ld s", r->retry_after);
    }
    return tsm_client_fail_set(
        e, TSM_CLIENT_HTTP, OT_E_IO, "%s %s: HTTP %ld %s: %s%s%s%s%s%s%s", method, p, r->status,
        e->code, e->message, e->field[0] ? " field=" : "", e->field,
        e->request_id[0] ? " (request " : "", e->request_id, e->request_id[0] ? ")" : "", retry);
}

/* ---- setup -------------------------------------------------------------- */

/* Splits and checks the base URL with libcurl's parser; host[:port] in host. */
static ot_err tsm_client_url_check(const char *url, char *host, size_t cap,
                                   struct tsm_client_err *e)
{
    char u[512];
    CURLU *h = curl_url();
    char *scheme = NULL;
    char *hname = NULL;
    char *port = NULL;
    char *path = NULL;
    char *query = NULL;
    char *frag = NULL;
    char *user = NULL;
    ot_err err = OT_OK;
    CURLUcode rc;

    tsm_client_esc_str(url, u, sizeof u);
    if (h == NULL) {
        return tsm_client_fail_set(e, TSM_CLIENT_LOCAL, OT_E_NOMEM, "out of memory");
    }
    if (url[0] == '\0') {
        err = tsm_client_fail_set(e, TSM_CLIENT_USAGE, OT_E_ARG, "malformed URL \"\": empty");
        goto out;
    }
    rc = curl_url_set(h, CURLUPART_URL, url, 0);
    if (rc != CURLUE_OK) {
        err = tsm_client_fail_set(e, TSM_CLIENT_USAGE, OT_E_ARG, "malformed URL \"%s\": %s", u,
                                  curl_url_strerror(rc));
        goto out;
    }
    (void)curl_url_get(h, CURLUPART_SCHEME, &scheme, 0);
    (void)curl_url_get(h, CURLUPART_HOST, &hname, 0);
    (void)curl_url_get(h, CURLUPART_PORT, &port, 0);
    (void)curl_url_get(h, CURLUPART_PATH, &path, 0);
    (void)curl_url_get(h, CURLUPART_QUERY, &query, 0);
    (void)curl_url_get(h, CURLUPART_FRAGMENT, &frag, 0);
    (void)curl_url_get(h, CURLUPART_USER, &user, 0);
    if (scheme == NULL || (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0)) {
        err = tsm_client_fail_set(e, TSM_CLIENT_USAGE, OT_E_ARG,
                                  "malformed URL \"%s\": the scheme must be https or http", u);
    } else if (hname == NULL || hname[0] == '\0') {
        err =
            tsm_client_fail_set(e, TSM_CLIENT_USAGE, OT_E_ARG, "malformed URL \"%s\": no host", u);
    } else if ((path != NULL && strcmp(path, "/") != 0 && path[0] != '\0') || query != NULL
               || frag != NULL || user != NULL) {
        err = tsm_client_fail_set(e, TSM_CLIENT_USAGE, OT_E_ARG,
                                  "malformed URL \"%s\": only scheme://host[:port] is allowed", u);
    } else {
        (void)snprintf(host, cap, "%s%s%s", hname, port ? ":" : "", port ? port : "");
    }
out:
    curl_free(scheme);
    curl_free(hname);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(frag);
    curl_free(user);
    curl_url_cleanup(h);
    return err;
}

/* Encrypted keys are not supported: never prompt on the terminal. */
static int tsm_client_no_pass(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* what: "CA file", "client certificate", "client key". Needs at least one
 * PEM object the file's role calls for. */
static ot_err tsm_client_pem_check(const char *what, const char *path, bool key,
                                   struct tsm_client_err *e)
{
    char p[512];
    FILE *f;
    int n = 0;

    tsm_client_esc_str(path, p, sizeof p);
    f = fopen(path, "rb");
    if (f == NULL) {
        return tsm_client_fail_set(e, TSM_CLIENT_LOCAL, OT_E_IO, "cannot open %s %s: %s", what, p,
                                   strerror(errno));
    }
    if (key) {
        EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, tsm_client_no_pass, NULL);
        n = k != NULL;
        EVP_PKEY_free(k);
    } else {
        X509 *x;
        while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
            X509_free(x);
            n++;
        }
    }
    ERR_clear_error();
    fclose(f);
    if (n == 0) {
        return tsm_client_fail_set(e, TSM_CLIENT_LOCAL, OT_E_FORMAT, "%s %s holds no PEM %s", what,
                                   p, key ? "private key (without a passphrase)" : "certificate");
    }
    return OT_OK;
}

ot_err tsm_client_new(const struct tsm_client_cfg *cfg, struct tsm_client **out,
                      struct tsm_client_err *e)
{
    struct net_client_cfg nc;
    struct tsm_client *c;
    ot_err err;

    tsm_client_err_reset(e);
    *out = NULL;
    if (cfg == NULL || cfg->url == NULL) {
        return tsm_client_fail_set(e, TSM_CLIENT_USAGE, OT_E_ARG, "no server URL");
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        return tsm_client_fail_set(e, TSM_CLIENT_LOCAL, OT_E_NOMEM, "out of memory");
    }
    err = tsm_client_url_check(cfg->url, c->host, sizeof c->host, e);
    c->https = strncmp(cfg->url, "https:", 6) == 0;
    if (err == OT_OK && cfg->ca_file != NULL) {
        err = tsm_client_pem_check("CA file", cfg->ca_file, false, e);
        tsm_client_esc_str(cfg->ca_file, c->ca_file, sizeof c->ca_file);
    }
    if (err == OT_OK && (cfg->client_cert != NULL) != (cfg->client_key != NULL)) {
        err = tsm_client_fail_set(e, TSM_CLIENT_USAGE, OT_E_ARG,
                                  "a client certificate needs its key and a key its certificate");
    }
    if (err == OT_OK && cfg->client_cert != NULL) {
        err = tsm_client_pem_check("client certificate", cfg->client_cert, false, e);
    }
    if (err == OT_OK && cfg->client_key != NULL) {
        err = tsm_client_pem_check("client key", cfg->client_key, true, e);
    }
    if (err != OT_OK) {
        free(c);
        return err;
    }
    memset(&nc, 0, sizeof nc);
    nc.base_url = cfg->url;
    nc.token = cfg->token;
    nc.ca_file = cfg->ca_file;
    nc.client_cert = cfg->client_cert;
    nc.client_key = cfg->client_key;
    nc.timeout_ms = cfg->timeout_ms;
    nc.max_body = cfg->max_body;
    err = net_client_new(&nc, &c->net);
    if (err != OT_OK) {
        free(c);
        return tsm_client_fail_set(e, err == OT_E_ARG ? TSM_CLIENT_USAGE : TSM_CLIENT_LOCAL, err,
                                   "client: %s", ot_strerror(err));
    }
    *out = c;
    return OT_OK;
}

void tsm_client_free(struct tsm_client *c)
{
    if (c == NULL) {
        return;
    }
    net_client_free(c->net);
    free(c);
}

void tsm_client_page_clear(struct tsm_client_page *p)
{
    if (p == NULL) {
        return;
    }
    json_free(p->doc);
    memset(p, 0, sizeof *p);
}

/* ---- requests ----------------------------------------------------------- */

/* Appends value percent-encoded (unreserved characters kept) to path. */
static bool tsm_client_enc(char *path, size_t cap, const char *value)
{
    static const char hexd[] = "0123456789ABCDEF";
    size_t o = strlen(path);

    for (const unsigned char *s = (const unsigned char *)value; *s != '\0'; s++) {
        bool plain = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')
                     || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'
                     || *s == '~';
        if (o + (plain ? 1 : 3) >= cap) {
            return false;
        }
        if (plain) {
            path[o++] = (char)*s;
        } else {
            path[o++] = '%';
            path[o++] = hexd[*s >> 4];
            path[o++] = hexd[*s & 15];
        }
    }
    path[o] = '\0';
    return true;
}

/* Appends "?name=value" or "&name=value"; value NULL appends nothing. */
static bool tsm_client_qadd(char *path, size_t cap, const char *name, const char *value)
{
    size_t o = strlen(path);

    if (value == NULL) {
        return true;
    }
    int w = snprintf(path + o, cap - o, "%c%s=", strchr(path, '?') ? '&' : '?', name);
    return w > 0 && (size_t)w < cap - o && tsm_client_enc(path, cap, value);
}

static bool tsm_client_qint(char *path, size_t cap, const char *name, int64_t v)
{
    char s[24];
    if (v == 0) {
        return true;
    }
    (void)snprintf(s, sizeof s, "%" PRId64, v);
    return tsm_client_qadd(path, cap, name, s);
}

static bool tsm_client_qpg(char *path, size_t cap, const struct tsm_client_pg *pg)
{
    if (pg == NULL) {
        return true;
    }
    if (pg->limit != 0 && !tsm_client_qint(path, cap, "limit", (int64_t)pg->limit)) {
        return false;
    }
    return pg->cursor == NULL || pg->cursor[0] == '\0'
           || tsm_client_qadd(path, cap, "cursor", pg->cursor);
}

ot_err tsm_client_idem_key(char out[TSM_CLIENT_IDEM_KEY_SIZE])
{
    unsigned char rnd[16];

    out[0] = '\0';
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        return OT_E_INTERNAL;
    }
    memcpy(out, "ctl-", 4);
    for (size_t i = 0; i < sizeof rnd; i++) {
        (void)snprintf(out + 4 + 2 * i, 3, "%02x", rnd[i]);
    }
    return OT_OK;
}

/* The Idempotency-Key header: key, or a fresh one (none when the random
 * source fails: the server then refuses the request, 400). */
static void tsm_client_idem(char *hdr, size_t cap, const char *key)
{
    char fresh[TSM_CLIENT_IDEM_KEY_SIZE];

    if (key == NULL && tsm_client_idem_key(fresh) == OT_OK) {
        key = fresh;
    }
    (void)snprintf(hdr, cap, "Idempotency-Key: %s", key != NULL ? key : "");
}

/* A hint after libcurl's text for the usual mistakes: a CA file that does
 * not vouch for the server, http:// to a TLS port, https:// to a plain one. */
static void tsm_client_hint(const struct tsm_client *c, const char *t, char *out, size_t cap)
{
    out[0] = '\0';
    if (strstr(t, "certificate problem") != NULL && c->ca_file[0] != '\0') {
        (void)snprintf(out, cap, " (CA file %s)", c->ca_file);
    } else if (!c->https && (strstr(t, "Empty reply") != NULL || strstr(t, "HTTP/0.9") != NULL)) {
        (void)snprintf(out, cap, " (a TLS port? the URL says http://)");
    } else if (c->https
               && (strstr(t, "wrong version number") != NULL
                   || strstr(t, "packet length too long") != NULL)) {
        (void)snprintf(out, cap, " (a plain HTTP port? the URL says https://)");
    }
}

/* One request. On OT_OK *out holds the answer's JSON document (an object or
 * an array; never NULL). raw/raw_len/ctype: a raw body instead of json. */
static ot_err tsm_client_call(struct tsm_client *c, const char *method, const char *path,
                              const json_t *body, const char *ctype, const void *raw,
                              size_t raw_len, const char *idem, bool want_idem, json_t **out,
                              struct tsm_client_err *e)
{
    struct net_client_resp r;
    char hdr[200];
    const char *headers[2] = {hdr, NULL};
    char p[512];
    ot_err err;

    tsm_client_err_reset(e);
    *out = NULL;
    if (c == NULL) {
        return tsm_client_fail_set(e, TSM_CLIENT_USAGE, OT_E_ARG, "no client");
    }
    tsm_client_idem(hdr, sizeof hdr, idem);
    if (ctype != NULL) {
        err = net_client_request_raw(c->net, method, path, ctype, raw, raw_len,
                                     want_idem ? headers : NULL, &r);
    } else {
        err = net_client_request(c->net, method, path, body, want_idem ? headers : NULL, &r);
    }
    tsm_client_esc_str(path, p, sizeof p);
    if (err != OT_OK) {
        if (err == OT_E_NOMEM) {
            tsm_client_fail_set(e, TSM_CLIENT_LOCAL, err, "%s %s: out of memory", method, p);
        } else if (err == OT_E_LIMIT) {
            tsm_client_fail_set(e, TSM_CLIENT_PROTOCOL, err,
                                "%s %s on %s: the answer is over the size cap", method, p, c->host);
        } else if (err == OT_E_ARG) {
            tsm_client_fail_set(e, TSM_CLIENT_USAGE, err, "%s %s: request too long", method, p);
        } else {
            tsm_client_esc_str(r.transport_error, e->transport, sizeof e->transport);
            char hint[600];
            tsm_client_hint(c, e->transport, hint, sizeof hint);
            tsm_client_fail_set(e, TSM_CLIENT_TRANSPORT, err, "cannot %s %s on %s: %s%s", method, p,
                                c->host, e->transport[0] ? e->transport : ot_strerror(err), hint);
        }
        net_client_resp_clear(&r);
        return err;
    }
    if (r.status < 200 || r.status > 299) {
        err = tsm_client_http_fail(c, method, p, &r, e);
        net_client_resp_clear(&r);
        return err;
    }
    if (r.json == NULL) {
        e->status = r.status;
        tsm_client_esc_str(r.request_id, e->request_id, sizeof e->request_id);
        tsm_client_fail_set(e, TSM_CLIENT_PROTOCOL, OT_E_FORMAT,
                            "%s %s on %s: HTTP %ld without a JSON body", method, p, c->host,
                            r.status);
        net_client_resp_clear(&r);
        return OT_E_FORMAT;
    }
    *out = r.json;
    r.json = NULL;
    net_client_resp_clear(&r);
    return OT_OK;
}

static ot_err tsm_client_get(struct tsm_client *c, const char *path, json_t **out,
                             struct tsm_client_err *e)
{
    return tsm_client_call(c, "GET", path, NULL, NULL, NULL, 0, NULL, false, out, e);
}

/* GET of one page: items must be an array, next_cursor a string or null. */
static ot_err tsm_client_page(struct tsm_client *c, const char *path, struct tsm_client_page *out,
                              struct tsm_client_err *e)
{
    char p[512];
    memset(out, 0, sizeof *out);
    ot_err err = tsm_client_get(c, path, &out->doc, e);
    if (err != OT_OK) {
        return err;
    }
    const json_t *items = json_object_get(out->doc, "items");
    const json_t *next = json_object_get(out->doc, "next_cursor");
    if (items == NULL || !json_is_array(items)
        || (next != NULL && !json_is_null(next)
            && (!json_is_string(next) || strlen(json_string_value(next)) > JSON_CURSOR_MAX))) {
        tsm_client_page_clear(out);
        tsm_client_esc_str(path, p, sizeof p);
        return tsm_client_fail_set(e, TSM_CLIENT_PROTOCOL, OT_E_FORMAT,
                                   "GET %s on %s: the answer is not a list page", p, c->host);
    }
    out->items = items;
    if (next != NULL && json_is_string(next)) {
        (void)snprintf(out->next_cursor, sizeof out->next_cursor, "%s", json_string_value(next));
    }
    return OT_OK;
}

static ot_err tsm_client_toolong(struct tsm_client_err *e)
{
    tsm_client_err_reset(e);
    return tsm_client_fail_set(e, TSM_CLIENT_USAGE, OT_E_ARG, "an argument is too long");
}

static ot_err tsm_client_nomem(struct tsm_client_err *e)
{
    tsm_client_err_reset(e);
    return tsm_client_fail_set(e, TSM_CLIENT_LOCAL, OT_E_NOMEM, "out of memory");
}

/* Generic calls for the clients of the other services (mno_client.h). */
ot_err tsm_client_json(struct tsm_client *c, const char *method, const char *path,
                       const json_t *body, const char *idem_key, json_t **out,
                       struct tsm_client_err *e)
{
    return tsm_client_call(c, method, path, body, NULL, NULL, 0, idem_key, idem_key != NULL, out,
                           e);
}

ot_err tsm_client_json_page(struct tsm_client *c, const char *path, struct tsm_client_page *out,
                            struct tsm_client_err *e)
{
    return tsm_client_page(c, path, out, e);
}

/* ---- tsm ---------------------------------------------------------------- */

ot_err tsm_client_se_import(struct tsm_client *c, const char *content_type, const void *body,
                            size_t len, const char *idem_key, json_t **report,
                            struct tsm_client_err *e)
{
    return tsm_client_call(c, "POST", TSM_CLIENT_TSM_PREFIX "/secure-elements:import", NULL,
                           content_type, body, len, idem_key, true, report, e);
}

/* ".../secure-elements/{cin}" + tail into path. */
static bool tsm_client_se_path(char *path, size_t cap, const char *cin, const char *tail)
{
    size_t o;
    (void)snprintf(path, cap, "%s", TSM_CLIENT_TSM_PREFIX "/secure-elements/");
    if (!tsm_client_enc(path, cap, cin)) {
        return false;
    }
    o = strlen(path);
    return (size_t)snprintf(path + o, cap - o, "%s", tail) < cap - o;
}

ot_err tsm_client_se_get(struct tsm_client *c, const char *cin, json_t **se,
                         struct tsm_client_err *e)
{
    char path[TSM_CLIENT_PATH_MAX];
    *se = NULL;
    if (!tsm_client_se_path(path, sizeof path, cin, "")) {
        return tsm_client_toolong(e);
    }
    return tsm_client_get(c, path, se, e);
}

ot_err tsm_client_se_find(struct tsm_client *c, const char *by, const char *value, bool id_only,
                          json_t **se, struct tsm_client_err *e)
{
    char path[TSM_CLIENT_PATH_MAX] = TSM_CLIENT_TSM_PREFIX "/secure-elements";
    *se = NULL;
    if (!tsm_client_qadd(path, sizeof path, by, value)
        || (id_only && !tsm_client_qadd(path, sizeof path, "fields", "id"))) {
        return tsm_client_toolong(e);
    }
    return tsm_client_get(c, path, se, e);
}

ot_err tsm_client_se_list(struct tsm_client *c, const char *mno, const char *type,
                          const struct tsm_client_pg *pg, struct tsm_client_page *out,
                          struct tsm_client_err *e)
{
    char path[TSM_CLIENT_PATH_MAX] = TSM_CLIENT_TSM_PREFIX "/secure-elements";
    memset(out, 0, sizeof *out);
    if (!tsm_client_qadd(path, sizeof path, "mno", mno)
        || !tsm_client_qadd(path, sizeof path, "type", type)
        || !tsm_client_qpg(path, sizeof path, pg)) {
        return tsm_client_toolong(e);
    }
    return tsm_client_page(c, path, out, e);
}

ot_err tsm_client_sd_list(struct tsm_client *c, const char *cin, const struct tsm_client_pg *pg,
                          struct tsm_client_page *out, struct tsm_client_err *e)
{
    char path[TSM_CLIENT_PATH_MAX];
    memset(out, 0, sizeof *out);
    if (!tsm_client_se_path(path, sizeof path, cin, "/security-domains")
        || !tsm_client_qpg(path, sizeof path, pg)) {
        return tsm_client_toolong(e);
    }
    return tsm_client_page(c, path, out, e);
}

ot_err tsm_client_sd_get(struct tsm_client *c, const char *cin, const char *aid, json_t **sd,
                         struct tsm_client_err *e)
{
    char path[TSM_CLIENT_PATH_MAX];
    *sd = NULL;
    if (!tsm_client_se_path(path, sizeof path, cin, "/security-domains/")
        || !tsm_client_enc(path, sizeof path, aid)) {
        return tsm_client_toolong(e);
    }
    return tsm_client_get(c, path, sd, e);
}

ot_err tsm_client_sd_assign(struct tsm_client *c, const char *cin,
                            const struct tsm_client_sd_assign *a, const char *idem_key, json_t **sd,
                            struct tsm_client_err *e)
{
    char path[TSM_CLIENT_PATH_MAX];
    json_t *body;
    ot_err err;

    *sd = NULL;
    if (!tsm_client_se_path(path, sizeof path, cin, "/security-domains")) {
        return tsm_client_toolong(e);
    }
    body = json_obj_new();
    if (body == NULL || json_put_str(body, "aid", a->aid) != OT_OK
        || json_put_str(body, "sp", a->sp) != OT_OK
        || (a->privileges != NULL && json_put_str(body, "privileges", a->privileges) != OT_OK)
        || (a->lcs != NULL && json_put_str(body, "lcs", a->lcs) != OT_OK)) {
        json_free(body);
        return tsm_client_nomem(e);
    }
    err = tsm_client_call(c, "POST", path, body, NULL, NULL, 0, idem_key, true, sd, e);
    json_free(body);
    return err;
}

/* ---- host administration ------------------------------------------------ */

ot_err tsm_client_principal_create(struct tsm_client *c, const struct tsm_client_principal *p,
                                   const char *idem_key, json_t **out, struct tsm_client_err *e)
{
    json_t *body = json_obj_new();
    json_t *ms = NULL;
    ot_err err;

    *out = NULL;
    if (body == NULL || json_put_str(body, "name", p->name) != OT_OK
        || json_put_str(body, "kind", p->kind) != OT_OK
        || (p->display_name != NULL && json_put_str(body, "display_name", p->display_name) != OT_OK)
        || (p->imei != NULL && json_put_str(body, "imei", p->imei) != OT_OK)
        || (p->imsi != NULL && json_put_str(body, "imsi", p->imsi) != OT_OK)
        || (p->mno != NULL && json_put_str(body, "mno", p->mno) != OT_OK)) {
        json_free(body);
        return tsm_client_nomem(e);
    }
    if (p->n_msisdns > 0) {
        ms = json_arr_new();
        if (ms == NULL || json_put(body, "msisdns", ms) != OT_OK) {
            json_free(body);
            return tsm_client_nomem(e);
        }
        for (size_t i = 0; i < p->n_msisdns && i < TSM_CLIENT_MSISDN_MAX; i++) {
            json_t *s = json_string(p->msisdns[i]);
            if (s == NULL || json_push(ms, s) != OT_OK) {
                json_free(body);
                return tsm_client_nomem(e);
            }
        }
    }
    err = tsm_client_call(c, "POST", TSM_CLIENT_ADMIN_PREFIX "/principals", body, NULL, NULL, 0,
                          idem_key, true, out, e);
    json_free(body);
    return err;
}

ot_err tsm_client_principal_get(struct tsm_client *c, int64_t id, json_t **out,
                                struct tsm_client_err *e)
{
    char path[TSM_CLIENT_PATH_MAX];
    (void)snprintf(path, sizeof path, "%s/principals/%" PRId64, TSM_CLIENT_ADMIN_PREFIX, id);
    return tsm_client_get(c, path, out, e);
}

ot_err tsm_client_principal_list(struct tsm_client *c, const struct tsm_client_pg *pg,
                                 struct tsm_client_page *out, struct tsm_client_err *e)
{
    char path[TSM_CLIENT_PATH_MAX] = TSM_CLIENT_ADMIN_PREFIX "/principals";
    memset(out, 0, sizeof *out);
    if (!tsm_client_qpg(path, sizeof path, pg)) {
        return tsm_client_toolong(e);
    }
    return tsm_client_page(c, path, out, e);
}

ot_err tsm_client_cert_bind(struct tsm_client *c, int64_t principal_id, const char *subject,
                            const char *idem_key, json_t **out, struct tsm_client_err *e)
{
    char path[TSM_CLIENT_PATH_MAX];
    json_t *body = json_obj_new();
    ot_err err;

    *out = NULL;
    if (body == NULL || json_put_str(body, "subject", subject) != OT_OK) {
        json_free(body);
        return tsm_client_nomem(e);
    }
    (void)snprintf(path, sizeof path, "%s/principals/%" PRId64 "/certificates",
                   TSM_CLIENT_ADMIN_PREFIX, principal_id);
    err = tsm_client_call(c, "POST", path, body, NULL, NULL, 0, idem_key, true, out, e);
    json_free(body);
    return err;
}

ot_err tsm_client_cert_unbind(struct tsm_client *c, int64_t principal_id, const char *subject,
                              json_t **out, struct tsm_client_err *e)
{
    char path[TSM_CLIENT_PATH_MAX];

    *out = NULL;
    (void)snprintf(path, sizeof path, "%s/principals/%" PRId64 "/certificates",
                   TSM_CLIENT_ADMIN_PREFIX, principal_id);
    if (!tsm_client_qadd(path, sizeof path, "subject", subject)) {
        return tsm_client_toolong(e);
    }
    return tsm_client_call(c, "DELETE", path, NULL, NULL, NULL, 0, NULL, false, out, e);
}

ot_err tsm_client_token_issue(struct tsm_client *c, int64_t principal_id, int64_t ttl_s,
                              const char *label, json_t **out, struct tsm_client_err *e)
{
    json_t *body = json_obj_new();
    ot_err err;

    *out = NULL;
    if (body == NULL || json_put_int(body, "principal_id", principal_id) != OT_OK
        || (ttl_s != 0 && json_put_int(body, "ttl_s", ttl_s) != OT_OK)
        || (label != NULL && json_put_str(body, "label", label) != OT_OK)) {
        json_free(body);
        return tsm_client_nomem(e);
    }
    /* No Idempotency-Key: the answer holds a secret the server must not keep. */
    err = tsm_client_call(c, "POST", TSM_CLIENT_ADMIN_PREFIX "/tokens", body, NULL, NULL, 0, NULL,
                          false, out, e);
    json_free(body);
    return err;
}

ot_err tsm_client_token_list(struct tsm_client *c, int64_t principal_id,
                             const struct tsm_client_pg *pg, struct tsm_client_page *out,
                             struct tsm_client_err *e)
{
    char path[TSM_CLIENT_PATH_MAX] = TSM_CLIENT_ADMIN_PREFIX "/tokens";
    memset(out, 0, sizeof *out);
    if (!tsm_client_qint(path, sizeof path, "principal_id", principal_id)
        || !tsm_client_qpg(path, sizeof path, pg)) {
        return tsm_client_toolong(e);
    }
    return tsm_client_page(c, path, out, e);
}

ot_err tsm_client_token_revoke(struct tsm_client *c, int64_t id, json_t **out,
                               struct tsm_client_err *e)
{
    char path[TSM_CLIENT_PATH_MAX];
    (void)snprintf(path, sizeof path, "%s/tokens/%" PRId64, TSM_CLIENT_ADMIN_PREFIX, id);
    return tsm_client_call(c, "DELETE", path, NULL, NULL, NULL, 0, NULL, false, out, e);
}

ot_err tsm_client_audit_list(struct tsm_client *c, const struct tsm_client_audit_filter *f,
                             const struct tsm_client_pg *pg, struct tsm_client_page *out,
                             struct tsm_client_err *e)
{
    char path[TSM_CLIENT_PATH_MAX] = TSM_CLIENT_ADMIN_PREFIX "/audit";
    memset(out, 0, sizeof *out);
    if (f != NULL
        && (!tsm_client_qadd(path, sizeof path, "action", f->action)
            || !tsm_client_qint(path, sizeof path, "principal_id", f->principal_id)
            || !tsm_client_qadd(path, sizeof path, "request_id", f->request_id))) {
        return tsm_client_toolong(e);
    }
    if (!tsm_client_qpg(path, sizeof path, pg)) {
        return tsm_client_toolong(e);
    }
    return tsm_client_page(c, path, out, e);
}

ot_err tsm_client_audit_verify(struct tsm_client *c, json_t **out, struct tsm_client_err *e)
{
    return tsm_client_get(c, TSM_CLIENT_ADMIN_PREFIX "/audit/verify", out, e);
}

struct tsm_client_follow {
    tsm_client_audit_fn fn;
    void *ctx;
};

static bool tsm_client_follow_event(void *ctx, const char *id, const char *event, const char *data)
{
    struct tsm_client_follow *f = ctx;
    json_t *row = NULL;
    int64_t seq = 0;
    bool go_on = true;

    if (id == NULL || strcmp(event, "audit") != 0 || !svc_id_parse(id, &seq)
        || json_parse(data, strlen(data), strlen(data), &row, NULL) != OT_OK
        || !json_is_object(row)) {
        json_free(row);
        return true; /* not an audit row: skipped */
    }
    go_on = f->fn(f->ctx, seq, row);
    json_free(row);
    return go_on;
}

ot_err tsm_client_audit_follow(struct tsm_client *c, int64_t from_seq, tsm_client_audit_fn fn,
                               void *ctx, struct tsm_client_err *e)
{
    static const char path[] = TSM_CLIENT_ADMIN_PREFIX "/events";
    struct tsm_client_follow f = {fn, ctx};
    struct net_sse_opts opts;
    char from[24];
    char last[NET_SSE_ID_MAX + 1] = "";
    ot_err err;

    tsm_client_err_reset(e);
    memset(&opts, 0, sizeof opts);
    opts.max_reconnects = 5;
    if (from_seq >= 0) {
        (void)snprintf(from, sizeof from, "%" PRId64, from_seq);
    }
    err = net_client_sse(c->net, path, from_seq >= 0 ? from : NULL, &opts, tsm_client_follow_event,
                         &f, last, sizeof last);
    switch (err) {
    case OT_OK:
        return OT_OK;
    case OT_E_AUTH:
        e->status = 401;
        return tsm_client_fail_set(e, TSM_CLIENT_HTTP, err,
                                   "GET %s on %s: the stream ended: unauthenticated (the token is "
                                   "revoked, expired or wrong)",
                                   path, c->host);
    case OT_E_FORBIDDEN:
        e->status = 403;
        return tsm_client_fail_set(e, TSM_CLIENT_HTTP, err,
                                   "GET %s on %s: HTTP 403 forbidden: the audit stream is for "
                                   "operators",
                                   path, c->host);
    case OT_E_NOMEM:
        return tsm_client_fail_set(e, TSM_CLIENT_LOCAL, err, "out of memory");
    case OT_E_CLOSED:
    case OT_E_TIMEOUT:
        return tsm_client_fail_set(e, TSM_CLIENT_TRANSPORT, err,
                                   "GET %s on %s: the stream ended and did not come back after "
                                   "%u tries (last row %s)",
                                   path, c->host, opts.max_reconnects, last[0] ? last : "none");
    default:
        return tsm_client_fail_set(e, TSM_CLIENT_PROTOCOL, err, "GET %s on %s: %s", path, c->host,
                                   ot_strerror(err));
    }
}
