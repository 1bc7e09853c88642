/* TSM service: principals, certificates, API tokens and the audit log. */
#define OT_LOG_COMPONENT "tsm.api"
#include "tsm/tsm_priv.h"

#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "db/audit.h"
#include "db/authstore.h"
#include "db/db.h"
#include "db/keystore.h"
#include "net/http.h"
#include "net/json.h"
#include "tsm/csv.h"
#include "tsm/registry.h"
#include "tsm/serec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TSM_TOKEN_TTL_DEF  ((int64_t)90 * 24 * 3600)
#define TSM_AUDIT_LIST_DEF 100u

/* ---- principals, certificates, tokens ----------------------------------- */

static json_t *tsm_principal_json(const struct authstore_principal *p)
{
    json_t *o = json_obj_new();

    if (o == NULL || json_put_int(o, "id", p->id) != OT_OK
        || json_put_str(o, "kind", authstore_kind_name(p->kind)) != OT_OK
        || json_put_str(o, "name", p->name) != OT_OK
        || json_put_int(o, "created_at", p->created_at) != OT_OK
        || json_put_bool(o, "disabled", p->disabled) != OT_OK) {
        json_free(o);
        return NULL;
    }
    return o;
}

void tsm_h_principal_create(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"kind", "name", NULL};
    static const char *const kinds[] = {"operator", "service_provider", "subscriber", "device"};
    static const enum authstore_kind kind_vals[] = {AUTHSTORE_OPERATOR, AUTHSTORE_SP,
                                                    AUTHSTORE_SUBSCRIBER, AUTHSTORE_DEVICE};
    struct tsm *t = ctx;
    struct json_err jerr;
    struct authstore_principal p;
    struct db_conn *c = NULL;
    json_t *doc;
    const char *name = NULL;
    size_t kind = 0;
    int64_t id = 0;
    bool created = true;
    char res[AUDIT_RESOURCE_MAX + 1];
    ot_err err;

    memset(&jerr, 0, sizeof(jerr));
    doc = tsm_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_enum(doc, "kind", kinds, 4, &kind, &jerr) != OT_OK
        || json_get_str(doc, "name", 1, AUTHSTORE_NAME_MAX, &name, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        json_free(doc);
        return;
    }
    err = tsm_tx_begin(t, &c);
    if (err == OT_OK) {
        err = authstore_create_principal_tx(t->auth, c, kind_vals[kind], name, &id);
        if (err == OT_E_CONFLICT) {
            created = false; /* idempotent: the same principal exists */
            err = authstore_find_principal_tx(t->auth, c, kind_vals[kind], name, &p);
        } else if (err == OT_OK) {
            err = authstore_get_principal_tx(t->auth, c, id, &p);
        }
    }
    json_free(doc);
    if (err != OT_OK) {
        tsm_tx_abort(&c);
        net_resp_error(resp, err, NULL,
                       err == OT_E_FORMAT ? "name must be printable ASCII without spaces" : NULL,
                       err == OT_E_FORMAT ? "name" : NULL);
        return;
    }
    if (created) {
        snprintf(res, sizeof(res), "/tsm/v1/principals/%lld", (long long)p.id);
        err = tsm_audit(t, c, req, "principal.create", res, "ok");
        if (err != OT_OK) {
            tsm_tx_abort(&c);
            tsm_fail(resp, err);
            return;
        }
    }
    if (tsm_tx_commit(&c, req, resp, created ? 201 : 200, tsm_principal_json(&p)) == OT_OK
        && created) {
        OT_LOG_INFO("req_id=%s principal created id=%lld kind=%s name=%s", net_req_request_id(req),
                    (long long)p.id, authstore_kind_name(p.kind), p.name);
    }
}

/* {id} as a positive decimal id; answers 404 itself when malformed. */
static bool tsm_id_of_path(const struct net_req *req, struct net_resp *resp, int64_t *id)
{
    const char *s = net_req_param(req, "id");
    int64_t v = 0;
    size_t i;

    if (s == NULL || s[0] == '\0' || strlen(s) > 18 || s[0] == '0') {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, NULL, NULL);
        return false;
    }
    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9') {
            net_resp_error(resp, OT_E_NOT_FOUND, NULL, NULL, NULL);
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *id = v;
    return true;
}

void tsm_h_cert_bind(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"subject", NULL};
    struct tsm *t = ctx;
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
    if (!tsm_id_of_path(req, resp, &id)) {
        return;
    }
    doc = tsm_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_str(doc, "subject", 1, AUTHSTORE_CERT_ID_MAX, &subject, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto out;
    }
    err = tsm_tx_begin(t, &c);
    if (err == OT_OK) {
        err = authstore_get_principal_tx(t->auth, c, id, &p);
    }
    if (err == OT_OK && p.kind != AUTHSTORE_SP) {
        err = OT_E_NOT_FOUND; /* client certificates are for service providers */
    }
    if (err == OT_OK) {
        err = authstore_bind_cert_tx(t->auth, c, id, subject);
    }
    if (err != OT_OK) {
        tsm_tx_abort(&c);
        net_resp_error(resp, err, NULL,
                       err == OT_E_CONFLICT ? "this certificate is bound to another principal"
                                            : NULL,
                       err == OT_E_CONFLICT ? "subject" : NULL);
        goto out;
    }
    snprintf(res, sizeof(res), "/tsm/v1/principals/%lld/certificates", (long long)id);
    err = tsm_audit(t, c, req, "principal.cert.bind", res, "ok");
    if (err != OT_OK) {
        tsm_tx_abort(&c);
        tsm_fail(resp, err);
        goto out;
    }
    o = json_obj_new();
    if (o != NULL
        && (json_put_int(o, "principal_id", id) != OT_OK
            || json_put_str(o, "subject", subject) != OT_OK)) {
        json_free(o);
        o = NULL;
    }
    if (tsm_tx_commit(&c, req, resp, 200, o) == OT_OK) {
        OT_LOG_INFO("req_id=%s certificate bound principal=%lld", net_req_request_id(req),
                    (long long)id);
    }
out:
    json_free(doc);
}

/* POST /tsm/v1/tokens is not replayed through Idempotency-Key: the answer
 * holds the token text, which must exist only in that one answer (the
 * idempotency store would keep it at rest). */
void tsm_h_token_issue(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"principal_id", "ttl_s", "label", NULL};
    struct tsm *t = ctx;
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
    doc = tsm_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_int(doc, "principal_id", 1, INT64_MAX, &pid, &jerr) != OT_OK
        || json_opt_int(doc, "ttl_s", 60, AUTHSTORE_TTL_MAX, TSM_TOKEN_TTL_DEF, &ttl, &jerr)
               != OT_OK
        || json_opt_str(doc, "label", 0, AUTHSTORE_LABEL_MAX, &label, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto out;
    }
    err = tsm_tx_begin(t, &c);
    if (err == OT_OK) {
        err = authstore_get_principal_tx(t->auth, c, pid, &p);
    }
    if (err == OT_OK) {
        err = authstore_issue_token_tx(t->auth, c, pid, ttl, label, tok, sizeof(tok), &tid);
    }
    if (err != OT_OK) {
        tsm_tx_abort(&c);
        net_resp_error(resp, err, NULL,
                       err == OT_E_NOT_FOUND ? "no such principal"
                       : err == OT_E_STATE   ? "the principal is disabled"
                                             : NULL,
                       err == OT_E_NOT_FOUND || err == OT_E_STATE ? "principal_id" : NULL);
        goto out;
    }
    snprintf(res, sizeof(res), "/tsm/v1/tokens/%lld", (long long)tid);
    err = tsm_audit(t, c, req, "token.issue", res, "ok");
    if (err != OT_OK) {
        tsm_tx_abort(&c); /* the token never existed: its text is wiped below */
        tsm_fail(resp, err);
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
    if (tsm_tx_commit(&c, req, resp, 201, o) == OT_OK) {
        OT_LOG_INFO("req_id=%s token issued id=%lld principal=%lld", net_req_request_id(req),
                    (long long)tid, (long long)pid);
    }
out:
    ot_mem_wipe(tok, sizeof(tok));
    json_free(doc);
}

void tsm_h_token_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    const struct net_principal *p = net_req_principal(req);
    const char *qp = net_req_query(req, "principal_id");
    struct authstore_token_info *toks = NULL;
    json_t *arr = NULL;
    json_t *it;
    size_t n = 0;
    size_t i;
    int64_t pid = 0;
    ot_err err = OT_OK;

    if (qp != NULL) {
        char *end = NULL;
        long long v = strtoll(qp, &end, 10);
        if (end == qp || *end != '\0' || v < 1) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "principal_id must be a positive integer",
                           "principal_id");
            return;
        }
        pid = v;
    }
    /* Others than operators list their own tokens only. */
    if (p->kind != NET_P_OPERATOR) {
        if (pid != 0 && pid != p->id) {
            OT_TRY(tsm_authz(t, req, TSM_ACC_OWNED, pid, "token.list"));
        }
        pid = p->id;
    }
    OT_TRY(authstore_list_tokens(t->auth, pid, TSM_LIST_MAX, &toks, &n));
    arr = json_arr_new();
    if (arr == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (i = 0; i < n; i++) {
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
    OT_TRY(tsm_send_list(resp, &arr, 0));
out:
    if (err != OT_OK) {
        tsm_fail(resp, err);
    }
    json_free(arr);
    free(toks);
}

void tsm_h_token_revoke(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    const struct net_principal *p = net_req_principal(req);
    struct db_conn *c = NULL;
    int64_t id = 0;
    json_t *o;
    ot_err err;

    if (!tsm_id_of_path(req, resp, &id)) {
        return;
    }
    err = tsm_tx_begin(t, &c);
    if (err == OT_OK) {
        err = authstore_revoke_tx(t->auth, c, id, p->kind == NET_P_OPERATOR ? 0 : p->id);
    }
    if (err == OT_OK) {
        err = tsm_audit(t, c, req, "token.revoke", net_req_path(req), "ok");
        if (err != OT_OK) {
            tsm_tx_abort(&c);
            tsm_fail(resp, err);
            return;
        }
    }
    if (err != OT_OK) {
        /* Before tsm_authz, which audits on a connection of its own. */
        tsm_tx_abort(&c);
    }
    if (err == OT_E_NOT_FOUND && p->kind != NET_P_OPERATOR) {
        /* Missing or someone else's: one answer, audited as a denial. */
        err = tsm_authz(t, req, TSM_ACC_OWNED, 0, "token.revoke");
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
    err = tsm_tx_commit(&c, req, resp, 200, o);
    /* After the commit, whatever its result, never before: see
     * authstore_revoke_tx. */
    authstore_cache_flush(t->auth);
    if (err == OT_OK) {
        OT_LOG_INFO("req_id=%s token revoked id=%lld", net_req_request_id(req), (long long)id);
    }
}

/* ---- audit -------------------------------------------------------------- */

void tsm_h_audit_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    struct audit_query q;
    struct audit_entry *rows = NULL;
    json_t *arr = NULL;
    json_t *it;
    size_t n = 0;
    size_t i;
    int64_t next = 0;
    const char *qp = net_req_query(req, "principal_id");
    char hex[AUDIT_HASH_LEN * 2 + 1];
    ot_err err = OT_OK;

    memset(&q, 0, sizeof(q));
    if (!tsm_page_of_query(req, resp, TSM_AUDIT_LIST_DEF, AUDIT_LIST_MAX, &q.limit, &q.after_seq)) {
        return;
    }
    q.action = net_req_query(req, "action");
    q.request_id = net_req_query(req, "request_id");
    if (qp != NULL) {
        char *end = NULL;
        long long v = strtoll(qp, &end, 10);
        if (end == qp || *end != '\0' || v < 1) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "principal_id must be a positive integer",
                           "principal_id");
            return;
        }
        q.by_principal = true;
        q.principal_id = v;
    }
    OT_TRY(audit_list(t->db, &q, &rows, &n, &next));
    arr = json_arr_new();
    if (arr == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (i = 0; i < n; i++) {
        it = json_obj_new();
        if (it == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        OT_TRY(json_push(arr, it));
        OT_TRY(json_put_int(it, "seq", rows[i].seq));
        OT_TRY(json_put_int(it, "ts_ms", rows[i].ts));
        OT_TRY(
            json_put_str(it, "principal_kind",
                         rows[i].principal_kind == 0
                             ? "none"
                             : authstore_kind_name((enum authstore_kind)rows[i].principal_kind)));
        OT_TRY(json_put_int(it, "principal_id", rows[i].principal_id));
        OT_TRY(json_put_str(it, "principal_name", rows[i].principal_name));
        OT_TRY(json_put_str(it, "action", rows[i].action));
        OT_TRY(json_put_str(it, "resource", rows[i].resource));
        OT_TRY(json_put_str(it, "outcome", rows[i].outcome));
        OT_TRY(json_put_str(it, "request_id", rows[i].request_id));
        OT_TRY(hex_encode(rows[i].hash, AUDIT_HASH_LEN, hex, sizeof(hex)));
        OT_TRY(json_put_str(it, "hash", hex));
    }
    OT_TRY(tsm_send_list(resp, &arr, next));
out:
    if (err != OT_OK) {
        tsm_fail(resp, err);
    }
    json_free(arr);
    free(rows);
}

void tsm_h_audit_verify(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    int64_t bad = 0;
    int64_t checked = 0;
    json_t *o;
    ot_err err;

    (void)req;
    err = audit_verify(t->db, &bad, &checked);
    if (err != OT_OK && err != OT_E_CORRUPT) {
        tsm_fail(resp, err);
        return;
    }
    o = json_obj_new();
    if (o == NULL || json_put_bool(o, "intact", err == OT_OK) != OT_OK
        || json_put_int(o, "checked", checked) != OT_OK
        || (err == OT_OK ? json_put_null(o, "bad_seq") : json_put_int(o, "bad_seq", bad))
               != OT_OK) {
        json_free(o);
        tsm_fail(resp, OT_E_NOMEM);
        return;
    }
    net_resp_json(resp, 200, o);
}
