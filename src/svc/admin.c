/* The host's administration API (admin.h): principals, certificates, API
 * tokens and the audit log, on the kit like any service's handlers. */
#define OT_LOG_COMPONENT "svc.admin"
#include "svc/admin.h"

#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "core/utf8.h"
#include "db/audit.h"
#include "db/authstore.h"
#include "db/db.h"
#include "net/http.h"
#include "net/json.h"
#include "svc/events.h"
#include "svc/kit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_TOKEN_TTL_DEF  ((int64_t)90 * 24 * 3600)
#define ADMIN_AUDIT_LIST_DEF 100u

/* ---- attribute validators ------------------------------------------------ */

static bool admin_digits(const char *s, size_t min, size_t max)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= max) {
            return false;
        }
    }
    return n >= min;
}

bool svc_admin_msisdn_ok(const char *s)
{
    return admin_digits(s, 5, AUTHSTORE_DIGITS_MAX) && s[0] != '0';
}

bool svc_admin_imei_ok(const char *s)
{
    unsigned sum = 0;

    if (!admin_digits(s, 15, 15)) {
        return false;
    }
    /* Luhn over the 15 digits: every second digit from the right doubled. */
    for (size_t i = 0; i < 15; i++) {
        unsigned d = (unsigned)(s[14 - i] - '0');
        if (i % 2 == 1) {
            d *= 2;
            if (d > 9) {
                d -= 9;
            }
        }
        sum += d;
    }
    return sum % 10 == 0;
}

bool svc_admin_imsi_ok(const char *s)
{
    return admin_digits(s, 6, AUTHSTORE_DIGITS_MAX);
}

bool svc_admin_mno_ok(const char *s)
{
    size_t n = 0;

    if (s[0] < 'a' || s[0] > 'z') {
        return false;
    }
    for (; s[n] != '\0'; n++) {
        if (n >= AUTHSTORE_MNO_MAX
            || !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9'))) {
            return false;
        }
    }
    return true;
}

bool svc_admin_display_ok(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n <= AUTHSTORE_DISPLAY_MAX && ot_utf8_safe(s, n);
}

bool svc_admin_label_ok(const char *s)
{
    size_t n = strlen(s);

    return n <= AUTHSTORE_LABEL_MAX && ot_utf8_safe(s, n);
}

/* ---- principals ------------------------------------------------------------- */

static ot_err admin_put_opt(json_t *o, const char *key, const char *v)
{
    return json_put_str(o, key, v[0] != '\0' ? v : NULL);
}

json_t *svc_admin_principal_json(const struct authstore_principal *p,
                                 const struct authstore_attrs *a)
{
    json_t *o = json_obj_new();
    json_t *arr = NULL;
    ot_err err = OT_OK;

    if (o == NULL) {
        return NULL;
    }
    OT_TRY(json_put_int(o, "id", p->id));
    OT_TRY(json_put_str(o, "kind", authstore_kind_name(p->kind)));
    OT_TRY(json_put_str(o, "name", p->name));
    OT_TRY(json_put_int(o, "created_at", p->created_at));
    OT_TRY(json_put_bool(o, "disabled", p->disabled));
    switch (p->kind) {
    case AUTHSTORE_SP:
        OT_TRY(admin_put_opt(o, "display_name", a->display_name));
        break;
    case AUTHSTORE_SUBSCRIBER:
        arr = json_arr_new();
        if (arr == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        for (size_t i = 0; i < a->n_msisdns; i++) {
            OT_TRY(json_push(arr, json_string(a->msisdns[i])));
        }
        OT_TRY(json_put(o, "msisdns", arr));
        arr = NULL;
        break;
    case AUTHSTORE_DEVICE:
        OT_TRY(admin_put_opt(o, "imei", a->imei));
        OT_TRY(admin_put_opt(o, "imsi", a->imsi));
        OT_TRY(admin_put_opt(o, "mno", a->mno));
        break;
    case AUTHSTORE_OPERATOR:
        break;
    }
out:
    json_free(arr);
    if (err != OT_OK) {
        json_free(o);
        return NULL;
    }
    return o;
}

/* The optional string member of doc into dst (capacity cap) when ok(); answers
 * 400 itself (message msg) and returns false otherwise. */
static bool admin_opt_attr(const json_t *doc, const char *member, bool (*ok)(const char *),
                           const char *msg, char *dst, size_t cap, bool *given,
                           struct net_resp *resp)
{
    struct json_err jerr;
    const char *s = NULL;

    memset(&jerr, 0, sizeof(jerr));
    if (json_opt_str(doc, member, 1, 256, &s, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        return false;
    }
    if (s == NULL) {
        return true;
    }
    if (!ok(s) || strlen(s) >= cap) {
        net_resp_error(resp, OT_E_FORMAT, NULL, msg, member);
        return false;
    }
    memcpy(dst, s, strlen(s) + 1);
    *given = true;
    return true;
}

/* The kind-specific members of a create body into *a; answers 400 itself.
 * *given: at least one attribute was in the body. */
static bool admin_attrs_of(const json_t *doc, enum authstore_kind kind, struct authstore_attrs *a,
                           bool *given, struct net_resp *resp)
{
    static const struct {
        const char *member;
        enum authstore_kind kind;
    } owner[] = {{"display_name", AUTHSTORE_SP},
                 {"msisdns", AUTHSTORE_SUBSCRIBER},
                 {"imei", AUTHSTORE_DEVICE},
                 {"imsi", AUTHSTORE_DEVICE},
                 {"mno", AUTHSTORE_DEVICE}};
    struct json_err jerr;
    const json_t *arr = NULL;
    size_t count = 0;
    char msg[128];

    memset(&jerr, 0, sizeof(jerr));
    memset(a, 0, sizeof(*a));
    *given = false;
    for (size_t i = 0; i < sizeof(owner) / sizeof(owner[0]); i++) {
        if (json_object_get(doc, owner[i].member) != NULL && owner[i].kind != kind) {
            snprintf(msg, sizeof(msg), "%s applies to %s principals only", owner[i].member,
                     authstore_kind_name(owner[i].kind));
            net_resp_error(resp, OT_E_FORMAT, NULL, msg, owner[i].member);
            return false;
        }
    }
    if (!admin_opt_attr(doc, "display_name", svc_admin_display_ok,
                        "display_name must be 1 to 127 bytes of text without control or "
                        "bidirectional-override characters",
                        a->display_name, sizeof(a->display_name), given, resp)) {
        return false;
    }
    if (json_object_get(doc, "msisdns") != NULL) {
        if (json_get_array(doc, "msisdns", 1, AUTHSTORE_MSISDNS_MAX, &arr, &count, &jerr)
            != OT_OK) {
            net_resp_json_error(resp, OT_E_FORMAT, &jerr);
            return false;
        }
        for (size_t i = 0; i < count; i++) {
            const char *m = json_string_value(json_at(arr, i));
            if (m == NULL || !svc_admin_msisdn_ok(m)) {
                snprintf(msg, sizeof(msg),
                         "msisdns[%zu] must be 5 to 15 digits, the first not 0 (E.164 without +)",
                         i);
                net_resp_error(resp, OT_E_FORMAT, NULL, msg, "msisdns");
                return false;
            }
            for (size_t j = 0; j < i; j++) {
                if (strcmp(a->msisdns[j], m) == 0) {
                    snprintf(msg, sizeof(msg), "msisdns[%zu] repeats msisdns[%zu]", i, j);
                    net_resp_error(resp, OT_E_FORMAT, NULL, msg, "msisdns");
                    return false;
                }
            }
            snprintf(a->msisdns[i], sizeof(a->msisdns[i]), "%s", m);
        }
        a->n_msisdns = count;
        *given = true;
    }
    return admin_opt_attr(doc, "imei", svc_admin_imei_ok,
                          "imei must be 15 digits with a valid check digit", a->imei,
                          sizeof(a->imei), given, resp)
           && admin_opt_attr(doc, "imsi", svc_admin_imsi_ok, "imsi must be 6 to 15 digits", a->imsi,
                             sizeof(a->imsi), given, resp)
           && admin_opt_attr(doc, "mno", svc_admin_mno_ok,
                             "mno must name an mno instance: 1 to 15 characters of a-z and 0-9, "
                             "starting with a letter",
                             a->mno, sizeof(a->mno), given, resp);
}

static bool admin_attrs_equal(const struct authstore_attrs *x, const struct authstore_attrs *y)
{
    if (strcmp(x->display_name, y->display_name) != 0 || strcmp(x->imei, y->imei) != 0
        || strcmp(x->imsi, y->imsi) != 0 || strcmp(x->mno, y->mno) != 0
        || x->n_msisdns != y->n_msisdns) {
        return false;
    }
    for (size_t i = 0; i < x->n_msisdns; i++) {
        if (strcmp(x->msisdns[i], y->msisdns[i]) != 0) {
            return false;
        }
    }
    return true;
}

static void admin_h_principal_create(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"kind", "name", "display_name", "msisdns",
                                          "imei", "imsi", "mno",          NULL};
    static const char *const kinds[] = {"operator", "service_provider", "subscriber", "device"};
    static const enum authstore_kind kind_vals[] = {AUTHSTORE_OPERATOR, AUTHSTORE_SP,
                                                    AUTHSTORE_SUBSCRIBER, AUTHSTORE_DEVICE};
    struct svc_kit *k = ctx;
    struct authstore *auth = svc_kit_auth(k);
    struct json_err jerr;
    struct authstore_principal p;
    struct authstore_attrs attrs;
    struct authstore_attrs have;
    struct db_conn *c = NULL;
    json_t *doc;
    const char *name = NULL;
    size_t kind = 0;
    int64_t id = 0;
    bool created = true;
    bool given = false;
    char res[AUDIT_RESOURCE_MAX + 1];
    const char *msg = NULL;
    const char *field = NULL;
    ot_err err;

    memset(&jerr, 0, sizeof(jerr));
    memset(&have, 0, sizeof(have));
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_enum(doc, "kind", kinds, 4, &kind, &jerr) != OT_OK
        || json_get_str(doc, "name", 1, AUTHSTORE_NAME_MAX, &name, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        json_free(doc);
        return;
    }
    if (!admin_attrs_of(doc, kind_vals[kind], &attrs, &given, resp)) {
        json_free(doc);
        return;
    }
    err = svc_tx_begin(k, &c);
    if (err == OT_OK) {
        err = authstore_create_principal_tx(auth, c, kind_vals[kind], name, &id);
        if (err == OT_E_CONFLICT) {
            created = false; /* idempotent: the same principal exists */
            err = authstore_find_principal_tx(auth, c, kind_vals[kind], name, &p);
            if (err == OT_OK) {
                err = authstore_get_attrs(auth, c, p.id, &have);
            }
            if (err == OT_OK && given && !admin_attrs_equal(&attrs, &have)) {
                err = OT_E_CONFLICT;
                msg = "this principal exists with other attributes";
                field = "name";
            }
            attrs = have;
        } else if (err == OT_OK) {
            err = authstore_set_attrs_tx(auth, c, id, &attrs);
            if (err == OT_E_CONFLICT) {
                msg = "an MSISDN belongs to another principal";
                field = "msisdns";
            }
            if (err == OT_OK) {
                err = authstore_get_principal_tx(auth, c, id, &p);
            }
        }
    }
    json_free(doc);
    if (err == OT_E_FORMAT) {
        msg = "name must be printable ASCII without spaces";
        field = "name";
    }
    if (err != OT_OK) {
        svc_tx_abort(&c);
        net_resp_error(resp, err, NULL, msg, field);
        return;
    }
    if (created) {
        snprintf(res, sizeof(res), SVC_ADMIN_PREFIX "/principals/%lld", (long long)p.id);
        err = svc_audit(k, c, req, "principal.create", res, "ok");
        if (err != OT_OK) {
            svc_tx_abort(&c);
            svc_fail(resp, err);
            return;
        }
    }
    if (svc_tx_commit(&c, req, resp, created ? 201 : 200, svc_admin_principal_json(&p, &attrs))
            == OT_OK
        && created) {
        OT_LOG_INFO("req_id=%s principal created id=%lld kind=%s name=%s", net_req_request_id(req),
                    (long long)p.id, authstore_kind_name(p.kind), p.name);
    }
}

static void admin_h_principal_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct svc_kit *k = ctx;
    struct authstore_principal p;
    struct authstore_attrs a;
    json_t *o;
    int64_t id = 0;
    ot_err err;

    if (!svc_id_of_path(req, resp, "id", &id)) {
        return;
    }
    err = authstore_get_principal(svc_kit_auth(k), id, &p);
    if (err == OT_OK) {
        err = authstore_get_attrs(svc_kit_auth(k), NULL, id, &a);
    }
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such principal" : NULL, NULL);
        return;
    }
    o = svc_admin_principal_json(&p, &a);
    if (o == NULL) {
        svc_fail(resp, OT_E_NOMEM);
        return;
    }
    net_resp_json(resp, 200, o);
}

static void admin_h_principal_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct svc_kit *k = ctx;
    struct authstore_principal *ps = NULL;
    struct authstore_attrs a;
    json_t *arr = NULL;
    size_t limit = 0;
    size_t n = 0;
    int64_t after = 0;
    bool more = false;
    ot_err err = OT_OK;

    if (!svc_page_of_query(req, resp, SVC_LIST_DEF, SVC_LIST_MAX, &limit, &after)) {
        return;
    }
    ps = calloc(limit, sizeof(*ps));
    arr = json_arr_new();
    if (ps == NULL || arr == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(authstore_list_principals(svc_kit_auth(k), after, limit, ps, &n, &more));
    for (size_t i = 0; i < n; i++) {
        json_t *it;
        OT_TRY(authstore_get_attrs(svc_kit_auth(k), NULL, ps[i].id, &a));
        it = svc_admin_principal_json(&ps[i], &a);
        if (it == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        OT_TRY(json_push(arr, it));
    }
    OT_TRY(svc_send_list(resp, &arr, more && n > 0 ? ps[n - 1].id : 0));
out:
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
    json_free(arr);
    free(ps);
}

static void admin_h_cert_bind(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"subject", NULL};
    struct svc_kit *k = ctx;
    struct authstore *auth = svc_kit_auth(k);
    struct json_err jerr;
    struct authstore_principal p;
    struct db_conn *c = NULL;
    json_t *doc = NULL;
    json_t *o = NULL;
    const char *subject = NULL;
    int64_t id = 0;
    char res[AUDIT_RESOURCE_MAX + 1];
    ot_err err;

    memset(&jerr, 0, sizeof(jerr));
    if (!svc_id_of_path(req, resp, "id", &id)) {
        return;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_str(doc, "subject", 1, AUTHSTORE_CERT_ID_MAX, &subject, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto out;
    }
    err = svc_tx_begin(k, &c);
    if (err == OT_OK) {
        err = authstore_get_principal_tx(auth, c, id, &p);
    }
    if (err == OT_OK && p.kind != AUTHSTORE_SP && p.kind != AUTHSTORE_DEVICE) {
        err = OT_E_NOT_FOUND; /* client certificates are for service providers and devices */
    }
    if (err == OT_OK) {
        err = authstore_bind_cert_tx(auth, c, id, subject);
    }
    if (err != OT_OK) {
        svc_tx_abort(&c);
        net_resp_error(resp, err, NULL,
                       err == OT_E_CONFLICT ? "this certificate is bound to another principal"
                                            : NULL,
                       err == OT_E_CONFLICT ? "subject" : NULL);
        goto out;
    }
    snprintf(res, sizeof(res), SVC_ADMIN_PREFIX "/principals/%lld/certificates", (long long)id);
    err = svc_audit(k, c, req, "principal.cert.bind", res, "ok");
    if (err != OT_OK) {
        svc_tx_abort(&c);
        svc_fail(resp, err);
        goto out;
    }
    o = json_obj_new();
    if (o != NULL
        && (json_put_int(o, "principal_id", id) != OT_OK
            || json_put_str(o, "subject", subject) != OT_OK)) {
        json_free(o);
        o = NULL;
    }
    if (svc_tx_commit(&c, req, resp, 200, o) == OT_OK) {
        OT_LOG_INFO("req_id=%s certificate bound principal=%lld", net_req_request_id(req),
                    (long long)id);
    }
out:
    json_free(doc);
}

/* DELETE /admin/v1/principals/{id}/certificates?subject=DN: the operator
 * withdraws a certificate (a stolen phone's); from the commit on it
 * authenticates nobody, and what it opened is closed (authstore_cache_flush
 * wakes the checks of open streams). */
static void admin_h_cert_unbind(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct svc_kit *k = ctx;
    struct authstore *auth = svc_kit_auth(k);
    struct db_conn *c = NULL;
    json_t *o = NULL;
    const char *subject = net_req_query(req, "subject");
    int64_t id = 0;
    char res[AUDIT_RESOURCE_MAX + 1];
    ot_err err;

    if (!svc_id_of_path(req, resp, "id", &id)) {
        return;
    }
    if (subject == NULL || subject[0] == '\0' || strlen(subject) > AUTHSTORE_CERT_ID_MAX) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "subject: the certificate's subject DN, required",
                       "subject");
        return;
    }
    err = svc_tx_begin(k, &c);
    if (err == OT_OK) {
        err = authstore_unbind_cert_tx(auth, c, id, subject);
    }
    if (err == OT_OK) {
        snprintf(res, sizeof(res), SVC_ADMIN_PREFIX "/principals/%lld/certificates", (long long)id);
        err = svc_audit(k, c, req, "principal.cert.unbind", res, "ok");
    }
    if (err != OT_OK) {
        svc_tx_abort(&c);
        net_resp_error(resp, err, NULL,
                       err == OT_E_NOT_FOUND ? "no such certificate for this principal" : NULL,
                       NULL);
        return;
    }
    o = json_obj_new();
    if (o != NULL
        && (json_put_int(o, "principal_id", id) != OT_OK
            || json_put_str(o, "subject", subject) != OT_OK
            || json_put_bool(o, "unbound", true) != OT_OK)) {
        json_free(o);
        o = NULL;
    }
    err = svc_tx_commit(&c, req, resp, 200, o);
    authstore_cache_flush(auth); /* after the commit, as a token's revocation */
    if (err == OT_OK) {
        OT_LOG_INFO("req_id=%s certificate unbound principal=%lld", net_req_request_id(req),
                    (long long)id);
    }
}

/* ---- tokens ------------------------------------------------------------------ */

/* POST /admin/v1/tokens is not replayed through Idempotency-Key: the answer
 * holds the token text, which must exist only in that one answer (the
 * idempotency store would keep it at rest). */
static void admin_h_token_issue(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"principal_id", "ttl_s", "label", NULL};
    struct svc_kit *k = ctx;
    struct authstore *auth = svc_kit_auth(k);
    struct json_err jerr;
    struct authstore_principal p;
    struct db_conn *c = NULL;
    json_t *doc = NULL;
    json_t *o = NULL;
    const char *label = NULL;
    int64_t pid = 0;
    int64_t ttl = 0;
    int64_t tid = 0;
    char tok[AUTHSTORE_TOKEN_LEN + 1];
    char res[AUDIT_RESOURCE_MAX + 1];
    ot_err err;

    memset(&jerr, 0, sizeof(jerr));
    memset(tok, 0, sizeof(tok));
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_int(doc, "principal_id", 1, INT64_MAX, &pid, &jerr) != OT_OK
        || json_opt_int(doc, "ttl_s", 60, AUTHSTORE_TTL_MAX, ADMIN_TOKEN_TTL_DEF, &ttl, &jerr)
               != OT_OK
        || json_opt_str(doc, "label", 0, AUTHSTORE_LABEL_MAX, &label, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto out;
    }
    /* Printed by tsmctl token list and in audit views: no control or
     * bidirectional-override characters (issue 9 point 15). */
    if (label != NULL && !svc_admin_label_ok(label)) {
        net_resp_error(resp, OT_E_FORMAT, NULL,
                       "label must be text without control, invisible or bidirectional-override "
                       "characters",
                       "label");
        goto out;
    }
    err = svc_tx_begin(k, &c);
    if (err == OT_OK) {
        err = authstore_get_principal_tx(auth, c, pid, &p);
    }
    if (err == OT_OK) {
        err = authstore_issue_token_tx(auth, c, pid, ttl, label, tok, sizeof(tok), &tid);
    }
    if (err != OT_OK) {
        svc_tx_abort(&c);
        net_resp_error(resp, err, NULL,
                       err == OT_E_NOT_FOUND ? "no such principal"
                       : err == OT_E_STATE   ? "the principal is disabled"
                                             : NULL,
                       err == OT_E_NOT_FOUND || err == OT_E_STATE ? "principal_id" : NULL);
        goto out;
    }
    snprintf(res, sizeof(res), SVC_ADMIN_PREFIX "/tokens/%lld", (long long)tid);
    err = svc_audit(k, c, req, "token.issue", res, "ok");
    if (err != OT_OK) {
        svc_tx_abort(&c); /* the token never existed: its text is wiped below */
        svc_fail(resp, err);
        goto out;
    }
    o = json_obj_new();
    if (o != NULL
        && (json_put_int(o, "id", tid) != OT_OK || json_put_int(o, "principal_id", pid) != OT_OK
            || json_put_str(o, "kind", authstore_kind_name(p.kind)) != OT_OK
            || json_put_str(o, "name", p.name) != OT_OK || json_put_str(o, "token", tok) != OT_OK
            || json_put_int(o, "ttl_s", ttl) != OT_OK)) {
        json_free(o);
        o = NULL;
    }
    net_resp_header(resp, "Cache-Control", "no-store");
    if (svc_tx_commit(&c, req, resp, 201, o) == OT_OK) {
        OT_LOG_INFO("req_id=%s token issued id=%lld principal=%lld", net_req_request_id(req),
                    (long long)tid, (long long)pid);
    }
out:
    ot_mem_wipe(tok, sizeof(tok));
    json_free(doc);
}

/* Newest first; the cursor is the last token id answered, the next page
 * holds the older ones, down to the first token ever issued. */
static void admin_h_token_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct svc_kit *k = ctx;
    const struct net_principal *p = net_req_principal(req);
    struct authstore_token_info *toks = NULL;
    json_t *arr = NULL;
    json_t *it;
    size_t n = 0;
    size_t limit = 0;
    int64_t before = 0;
    int64_t pid = 0;
    bool more = false;
    ot_err err = OT_OK;

    if (!svc_id_of_query(req, resp, "principal_id", &pid)
        || !svc_page_of_query(req, resp, SVC_LIST_DEF, SVC_LIST_MAX, &limit, &before)) {
        return;
    }
    /* Others than operators list their own tokens only. */
    if (p->kind != NET_P_OPERATOR) {
        if (pid != 0 && pid != p->id) {
            OT_TRY(svc_authz(k, req, SVC_ACC_OWNED, pid, "token.list"));
        }
        pid = p->id;
    }
    OT_TRY(authstore_list_tokens_page(svc_kit_auth(k), pid, before, limit, &toks, &n, &more));
    arr = json_arr_new();
    if (arr == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (size_t i = 0; i < n; i++) {
        it = json_obj_new();
        if (it == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        OT_TRY(json_push(arr, it));
        OT_TRY(json_put_int(it, "id", toks[i].id));
        OT_TRY(json_put_int(it, "principal_id", toks[i].principal_id));
        OT_TRY(json_put_str(it, "label", toks[i].label));
        OT_TRY(json_put_str(it, "prefix", toks[i].prefix));
        OT_TRY(json_put_int(it, "created_at", toks[i].created_at));
        OT_TRY(json_put_int(it, "expires_at", toks[i].expires_at));
        OT_TRY(json_put_int(it, "revoked_at", toks[i].revoked_at));
        OT_TRY(json_put_int(it, "last_used_at", toks[i].last_used_at));
    }
    OT_TRY(svc_send_list(resp, &arr, more && n > 0 ? toks[n - 1].id : 0));
out:
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
    json_free(arr);
    free(toks);
}

static void admin_h_token_revoke(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct svc_kit *k = ctx;
    struct authstore *auth = svc_kit_auth(k);
    const struct net_principal *p = net_req_principal(req);
    struct db_conn *c = NULL;
    int64_t id = 0;
    json_t *o;
    ot_err err;

    if (!svc_id_of_path(req, resp, "id", &id)) {
        return;
    }
    err = svc_tx_begin(k, &c);
    if (err == OT_OK) {
        err = authstore_revoke_tx(auth, c, id, p->kind == NET_P_OPERATOR ? 0 : p->id);
    }
    if (err == OT_OK) {
        err = svc_audit(k, c, req, "token.revoke", net_req_path(req), "ok");
        if (err != OT_OK) {
            svc_tx_abort(&c);
            svc_fail(resp, err);
            return;
        }
    }
    if (err != OT_OK) {
        svc_tx_abort(&c);
    }
    if (err == OT_E_NOT_FOUND && p->kind != NET_P_OPERATOR) {
        /* Missing or someone else's: one answer, audited as a denial. */
        err = svc_authz(k, req, SVC_ACC_OWNED, 0, "token.revoke");
        if (err == OT_OK) {
            err = OT_E_NOT_FOUND;
        }
    }
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such token" : NULL, NULL);
        return;
    }
    o = json_obj_new();
    if (o != NULL
        && (json_put_int(o, "id", id) != OT_OK || json_put_bool(o, "revoked", true) != OT_OK)) {
        json_free(o);
        o = NULL;
    }
    err = svc_tx_commit(&c, req, resp, 200, o);
    /* After the commit, whatever its result, never before: see
     * authstore_revoke_tx. */
    authstore_cache_flush(auth);
    if (err == OT_OK) {
        OT_LOG_INFO("req_id=%s token revoked id=%lld", net_req_request_id(req), (long long)id);
    }
}

/* ---- audit ------------------------------------------------------------------- */

json_t *svc_admin_audit_json(const struct audit_entry *e)
{
    char hex[AUDIT_HASH_LEN * 2 + 1];
    json_t *it = json_obj_new();
    ot_err err = OT_OK;

    if (it == NULL) {
        return NULL;
    }
    OT_TRY(json_put_int(it, "seq", e->seq));
    OT_TRY(json_put_int(it, "ts_ms", e->ts));
    OT_TRY(json_put_str(it, "principal_kind",
                        e->principal_kind == 0
                            ? "none"
                            : authstore_kind_name((enum authstore_kind)e->principal_kind)));
    OT_TRY(json_put_int(it, "principal_id", e->principal_id));
    OT_TRY(json_put_str(it, "principal_name", e->principal_name));
    OT_TRY(json_put_str(it, "action", e->action));
    OT_TRY(json_put_str(it, "resource", e->resource));
    OT_TRY(json_put_str(it, "outcome", e->outcome));
    OT_TRY(json_put_str(it, "request_id", e->request_id));
    OT_TRY(hex_encode(e->hash, AUDIT_HASH_LEN, hex, sizeof(hex)));
    OT_TRY(json_put_str(it, "hash", hex));
out:
    if (err != OT_OK) {
        json_free(it);
        return NULL;
    }
    return it;
}

static void admin_h_audit_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct svc_kit *k = ctx;
    struct audit_query q;
    struct audit_entry *rows = NULL;
    json_t *arr = NULL;
    json_t *it;
    size_t n = 0;
    int64_t next = 0;
    int64_t pid = 0;
    ot_err err = OT_OK;

    memset(&q, 0, sizeof(q));
    if (!svc_id_of_query(req, resp, "principal_id", &pid)
        || !svc_page_of_query(req, resp, ADMIN_AUDIT_LIST_DEF, AUDIT_LIST_MAX, &q.limit,
                              &q.after_seq)) {
        return;
    }
    q.action = net_req_query(req, "action");
    q.request_id = net_req_query(req, "request_id");
    q.by_principal = pid != 0;
    q.principal_id = pid;
    OT_TRY(audit_list(svc_kit_db(k), &q, &rows, &n, &next));
    arr = json_arr_new();
    if (arr == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (size_t i = 0; i < n; i++) {
        it = svc_admin_audit_json(&rows[i]);
        if (it == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        OT_TRY(json_push(arr, it));
    }
    OT_TRY(svc_send_list(resp, &arr, next));
out:
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
    json_free(arr);
    free(rows);
}

static void admin_h_audit_verify(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct svc_kit *k = ctx;
    int64_t bad = 0;
    int64_t checked = 0;
    json_t *o;
    ot_err err;

    (void)req;
    err = audit_verify(svc_kit_db(k), &bad, &checked);
    if (err != OT_OK && err != OT_E_CORRUPT) {
        svc_fail(resp, err);
        return;
    }
    o = json_obj_new();
    if (o == NULL || json_put_bool(o, "intact", err == OT_OK) != OT_OK
        || json_put_int(o, "checked", checked) != OT_OK
        || (err == OT_OK ? json_put_null(o, "bad_seq") : json_put_int(o, "bad_seq", bad))
               != OT_OK) {
        json_free(o);
        svc_fail(resp, OT_E_NOMEM);
        return;
    }
    net_resp_json(resp, 200, o);
}

/* ---- the live audit stream -------------------------------------------------- */

static void admin_h_events(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct svc_kit *k = ctx;

    svc_events_handle(svc_kit_events(k), req, resp);
}

/* ---- routes ------------------------------------------------------------------ */

#define ADMIN_OP NET_P_OPERATOR

static const char *const admin_q_page[] = {"cursor", "limit", NULL};
static const char *const admin_q_token_list[] = {"principal_id", "cursor", "limit", NULL};
static const char *const admin_q_cert_unbind[] = {"subject", NULL};
static const char *const admin_q_audit_list[] = {"cursor",       "limit",      "action",
                                                 "principal_id", "request_id", NULL};

static const struct svc_route admin_route_table[] = {
    {"POST", "/principals", ADMIN_OP, true, admin_h_principal_create, NULL, 0},
    {"GET", "/principals", ADMIN_OP, false, admin_h_principal_list, admin_q_page, 0},
    {"GET", "/principals/{id}", ADMIN_OP, false, admin_h_principal_get, NULL, 0},
    {"POST", "/principals/{id}/certificates", ADMIN_OP, true, admin_h_cert_bind, NULL, 0},
    {"DELETE", "/principals/{id}/certificates", ADMIN_OP, false, admin_h_cert_unbind,
     admin_q_cert_unbind, 0},
    {"POST", "/tokens", ADMIN_OP, false, admin_h_token_issue, NULL, 0},
    {"GET", "/tokens", NET_P_ANY, false, admin_h_token_list, admin_q_token_list, 0},
    {"DELETE", "/tokens/{id}", NET_P_ANY, false, admin_h_token_revoke, NULL, 0},
    {"GET", "/audit", ADMIN_OP, false, admin_h_audit_list, admin_q_audit_list, 0},
    {"GET", "/audit/verify", ADMIN_OP, false, admin_h_audit_verify, NULL, 0},
    {"GET", "/events", ADMIN_OP, false, admin_h_events, NULL, 0},
};

const struct svc_route *svc_admin_routes(size_t *n)
{
    *n = sizeof(admin_route_table) / sizeof(admin_route_table[0]);
    return admin_route_table;
}
