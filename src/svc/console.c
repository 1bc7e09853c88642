/* The web console's files and browser sessions (console.h). */
#define OT_LOG_COMPONENT "svc.console"
#include "svc/console.h"

#include "core/buf.h"
#include "core/log.h"
#include "db/authstore.h"
#include "net/http.h"
#include "net/json.h"
#include "svc/admin.h"
#include "svc/kit.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define CONSOLE_NAME_MAX 64u

struct console_file {
    char name[CONSOLE_NAME_MAX + 1];
    const char *ctype;
    uint8_t *data;
    size_t len;
};

struct svc_console {
    struct svc_kit *kit;
    int64_t ttl_s;
    struct console_file files[SVC_CONSOLE_FILES_MAX];
    size_t n_files;
};

static const struct {
    const char *ext;
    const char *ctype;
} console_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".json", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
};

static const char *console_ctype(const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < sizeof console_types / sizeof console_types[0]; i++) {
        size_t e = strlen(console_types[i].ext);
        if (n > e && strcmp(name + n - e, console_types[i].ext) == 0) {
            return console_types[i].ctype;
        }
    }
    return NULL;
}

static bool console_name_ok(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n <= CONSOLE_NAME_MAX && s[0] != '.'
           && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

static ot_err console_read(const char *path, uint8_t **data, size_t *len, size_t room)
{
    FILE *f = fopen(path, "rb");
    struct ot_buf b;
    uint8_t chunk[8192];
    size_t got = 0;
    ot_err err = OT_OK;

    if (f == NULL) {
        return OT_E_IO;
    }
    ot_buf_init(&b, room > 0 ? room : 1);
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        OT_TRY(ot_buf_append(&b, chunk, got));
    }
    if (ferror(f)) {
        OT_FAIL(OT_E_IO);
    }
    *data = b.data;
    *len = b.len;
    b.data = NULL;
out:
    ot_buf_free(&b);
    fclose(f);
    return err;
}

void svc_console_free(struct svc_console *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < c->n_files; i++) {
        free(c->files[i].data);
    }
    free(c);
}

ot_err svc_console_new(struct svc_kit *k, const char *dir, int64_t session_ttl_s,
                       struct svc_console **out, char *why, size_t cap)
{
    struct svc_console *c = NULL;
    DIR *d = NULL;
    struct dirent *de;
    size_t total = 0;
    char path[4096];
    ot_err err = OT_OK;

    *out = NULL;
    if (why != NULL && cap > 0) {
        why[0] = '\0';
    }
    if (k == NULL || dir == NULL || session_ttl_s < 1) {
        return OT_E_ARG;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        return OT_E_NOMEM;
    }
    c->kit = k;
    c->ttl_s = session_ttl_s;
    d = opendir(dir);
    if (d == NULL) {
        snprintf(why, cap, "console.dir %s: %s", dir, strerror(errno));
        OT_FAIL(OT_E_IO);
    }
    while ((de = readdir(d)) != NULL) {
        struct stat sb;
        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            continue; /* folders (none today) and what vanished */
        }
        const char *ctype = console_ctype(de->d_name);
        if (!console_name_ok(de->d_name) || ctype == NULL) {
            snprintf(why, cap, "console.dir: %s is not a console file name", de->d_name);
            OT_FAIL(OT_E_FORMAT);
        }
        if (c->n_files == SVC_CONSOLE_FILES_MAX) {
            snprintf(why, cap, "console.dir: more than %u files", SVC_CONSOLE_FILES_MAX);
            OT_FAIL(OT_E_LIMIT);
        }
        struct console_file *f = &c->files[c->n_files];
        memcpy(f->name, de->d_name, strlen(de->d_name) + 1); /* console_name_ok: fits */
        f->ctype = ctype;
        err = console_read(path, &f->data, &f->len, SVC_CONSOLE_BYTES_MAX - total);
        if (err != OT_OK) {
            snprintf(why, cap, "console.dir: %s: %s", de->d_name,
                     err == OT_E_LIMIT ? "files too large together" : strerror(errno));
            goto out;
        }
        total += f->len;
        c->n_files++;
    }
    OT_LOG_INFO("console: %zu files, %zu bytes from %s", c->n_files, total, dir);
    *out = c;
    c = NULL;
out:
    if (d != NULL) {
        closedir(d);
    }
    svc_console_free(c);
    return err;
}

/* ---- files ---------------------------------------------------------------- */

static void console_headers(struct net_resp *resp)
{
    net_resp_header(resp, "Content-Security-Policy", SVC_CONSOLE_CSP);
    net_resp_header(resp, "X-Content-Type-Options", "nosniff");
    net_resp_header(resp, "Referrer-Policy", "no-referrer");
    net_resp_header(resp, "X-Frame-Options", "DENY");
    net_resp_header(resp, "Cache-Control", "no-cache");
}

static void console_h_root(struct net_req *req, struct net_resp *resp, void *ctx)
{
    (void)req;
    (void)ctx;
    net_resp_header(resp, "Location", "/console/index.html");
    console_headers(resp);
    net_resp_text(resp, 302, NULL, "/console/index.html\n");
}

static void console_h_file(struct net_req *req, struct net_resp *resp, void *ctx)
{
    const struct svc_console *c = ctx;
    const char *name = net_req_param(req, "file");

    for (size_t i = 0; name != NULL && i < c->n_files; i++) {
        if (strcmp(c->files[i].name, name) == 0) {
            console_headers(resp);
            net_resp_bytes(resp, 200, c->files[i].ctype, c->files[i].data, c->files[i].len);
            return;
        }
    }
    net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such console file", NULL);
}

/* ---- sessions ------------------------------------------------------------- */

/* {"principal": {...}, "csrf": "...", "expires_at": n|null} */
static json_t *console_session_json(struct svc_console *c, const struct net_req *req,
                                    const char *session, int64_t expires_at, ot_err *e)
{
    struct authstore *as = svc_kit_auth(c->kit);
    const struct net_principal *np = net_req_principal(req);
    struct authstore_principal p;
    struct authstore_attrs a;
    char csrf[NET_CSRF_LEN + 1];
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&a, 0, sizeof a);
    OT_TRY(authstore_get_principal(as, np->id, &p));
    OT_TRY(authstore_get_attrs(as, NULL, np->id, &a));
    o = json_obj_new();
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(json_put(o, "principal", svc_admin_principal_json(&p, &a)));
    if (session != NULL) {
        OT_TRY(net_csrf_token(session, csrf, sizeof csrf));
        OT_TRY(json_put_str(o, "csrf", csrf));
    } else {
        OT_TRY(json_put_null(o, "csrf"));
    }
    if (expires_at > 0) {
        OT_TRY(json_put_int(o, "expires_at", expires_at));
    } else {
        OT_TRY(json_put_null(o, "expires_at"));
    }
out:
    if (err != OT_OK) {
        json_free(o);
        o = NULL;
    }
    *e = err;
    return o;
}

static void console_send(struct net_resp *resp, int status, json_t *o, ot_err err)
{
    if (o == NULL) {
        svc_fail(resp, err != OT_OK ? err : OT_E_NOMEM);
        return;
    }
    net_resp_json(resp, status, o);
}

/* POST /admin/v1/session: the token the request was authenticated with
 * (a bearer token; a session cookie gives a fresh session of the same
 * token) becomes a browser session. */
static void console_h_session_new(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct svc_console *c = ctx;
    const char *tok = net_req_token(req);
    char sess[AUTHSTORE_TOKEN_LEN + 1];
    char cookie[256];
    char res[64];
    int64_t sid = 0, expires = 0;
    json_t *o = NULL;
    size_t blen = 0;
    ot_err err = OT_OK;

    (void)net_req_body(req, &blen);
    if (blen > 0) {
        net_resp_error(resp, OT_E_FORMAT, NULL,
                       "no body: the session is issued on the request's bearer token", NULL);
        return;
    }
    if (tok == NULL) {
        net_resp_error(resp, OT_E_FORMAT, NULL,
                       "a browser session starts from an API token (Authorization: Bearer)", NULL);
        return;
    }
    err = authstore_issue_session(svc_kit_auth(c->kit), tok, c->ttl_s, "console session", sess,
                                  sizeof sess, &sid, &expires);
    if (err == OT_E_AUTH || err == OT_E_STATE) {
        net_resp_error(resp, OT_E_AUTH, NULL, "the token is no longer valid", NULL);
        return;
    }
    if (err != OT_OK) {
        svc_fail(resp, err);
        return;
    }
    snprintf(res, sizeof res, "/admin/v1/session/%" PRId64, sid);
    (void)svc_audit(c->kit, NULL, req, "console.sign_in", res, "ok");
    o = console_session_json(c, req, sess, expires, &err);
    if (o != NULL) {
        int64_t age = expires - (int64_t)time(NULL);
        snprintf(cookie, sizeof cookie,
                 SVC_CONSOLE_COOKIE "=%s; Path=/; Max-Age=%" PRId64
                                    "; HttpOnly; Secure; SameSite=Strict",
                 sess, age > 0 ? age : 0);
        net_resp_header(resp, "Set-Cookie", cookie);
        memset(cookie, 0, sizeof cookie);
    }
    memset(sess, 0, sizeof sess);
    console_send(resp, 201, o, err);
}

/* GET /admin/v1/session */
static void console_h_session_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct svc_console *c = ctx;
    ot_err err = OT_OK;
    json_t *o =
        console_session_json(c, req, net_req_via_cookie(req) ? net_req_token(req) : NULL, 0, &err);

    console_send(resp, 200, o, err);
}

/* DELETE /admin/v1/session: revokes the session of the cookie. */
static void console_h_session_end(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct svc_console *c = ctx;
    struct authstore *as = svc_kit_auth(c->kit);
    const struct net_principal *p = net_req_principal(req);
    int64_t sid = 0;
    char res[64];
    ot_err err = OT_OK;

    if (!net_req_via_cookie(req)) {
        net_resp_error(resp, OT_E_FORMAT, NULL,
                       "no browser session here: revoke API tokens with DELETE /admin/v1/tokens",
                       NULL);
        return;
    }
    err = authstore_token_id(as, net_req_token(req), &sid);
    if (err == OT_OK) {
        err = authstore_revoke(as, sid, p->id);
    }
    if (err != OT_OK) {
        svc_fail(resp, err);
        return;
    }
    snprintf(res, sizeof res, "/admin/v1/session/%" PRId64, sid);
    (void)svc_audit(c->kit, NULL, req, "console.sign_out", res, "ok");
    net_resp_header(resp, "Set-Cookie",
                    SVC_CONSOLE_COOKIE "=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
    net_resp_text(resp, 204, NULL, "");
}

#define CONSOLE_PEOPLE (NET_P_OPERATOR | NET_P_SP | NET_P_SUBSCRIBER)

static const struct svc_route console_route_table[] = {
    {"GET", "/console", 0, false, console_h_root, NULL, 0},
    {"GET", "/console/{file}", 0, false, console_h_file, NULL, 0},
    {"POST", SVC_ADMIN_PREFIX "/session", CONSOLE_PEOPLE, false, console_h_session_new, NULL, 0},
    {"GET", SVC_ADMIN_PREFIX "/session", CONSOLE_PEOPLE, false, console_h_session_get, NULL, 0},
    {"DELETE", SVC_ADMIN_PREFIX "/session", CONSOLE_PEOPLE, false, console_h_session_end, NULL, 0},
};

const struct svc_route *svc_console_routes(size_t *n)
{
    *n = sizeof console_route_table / sizeof console_route_table[0];
    return console_route_table;
}
