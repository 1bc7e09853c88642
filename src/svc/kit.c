/* The service kit (kit.h): audit, the one ownership check, strict parsing,
 * cursor pages, list and error answers, one transaction per change. */
#define OT_LOG_COMPONENT "svc.kit"
#include "svc/kit.h"

#include "core/buf.h"
#include "core/log.h"
#include "db/audit.h"
#include "db/db.h"
#include "db/idem.h"
#include "svc/events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct svc_kit {
    struct db *db;
    struct authstore *auth;
    struct svc_events *events; /* GET /admin/v1/events */
};

ot_err svc_kit_new(struct db *db, struct authstore *auth, struct svc_kit **out)
{
    struct svc_kit *k;

    *out = NULL;
    if (db == NULL || auth == NULL) {
        return OT_E_ARG;
    }
    k = calloc(1, sizeof(*k));
    if (k == NULL) {
        return OT_E_NOMEM;
    }
    k->db = db;
    k->auth = auth;
    if (svc_events_new(db, auth, &k->events) != OT_OK) {
        free(k);
        return OT_E_NOMEM;
    }
    *out = k;
    return OT_OK;
}

void svc_kit_flush(struct svc_kit *k)
{
    if (k != NULL) {
        (void)audit_seal(k->db, NULL); /* writes the queued rows first */
    }
}

void svc_kit_free(struct svc_kit *k)
{
    if (k == NULL) {
        return;
    }
    svc_events_free(k->events);
    svc_kit_flush(k);
    free(k);
}

struct db *svc_kit_db(const struct svc_kit *k)
{
    return k->db;
}

struct authstore *svc_kit_auth(const struct svc_kit *k)
{
    return k->auth;
}

struct svc_events *svc_kit_events(const struct svc_kit *k)
{
    return k->events;
}

/* ---- audit and authorisation ------------------------------------------ */

void svc_audit_entry(const struct net_req *req, const char *action, const char *resource,
                     const char *outcome, struct audit_entry *e)
{
    const struct net_principal *p = net_req_principal(req);

    memset(e, 0, sizeof(*e));
    if (p != NULL) {
        e->principal_kind = p->kind;
        e->principal_id = p->id;
        snprintf(e->principal_name, sizeof(e->principal_name), "%s", p->name);
    }
    snprintf(e->action, sizeof(e->action), "%s", action);
    snprintf(e->resource, sizeof(e->resource), "%s", resource);
    snprintf(e->outcome, sizeof(e->outcome), "%s", outcome);
    snprintf(e->request_id, sizeof(e->request_id), "%s", net_req_request_id(req));
}

ot_err svc_audit(struct svc_kit *k, struct db_conn *c, const struct net_req *req,
                 const char *action, const char *resource, const char *outcome)
{
    struct audit_entry e;
    ot_err err;

    svc_audit_entry(req, action, resource, outcome, &e);
    err = c != NULL ? audit_append_tx(c, &e) : audit_append(k->db, &e);
    if (err != OT_OK) {
        OT_LOG_ERROR("req=%s audit of %s failed: %s", e.request_id, action, ot_strerror(err));
    }
    return err;
}

ot_err svc_audit_on(struct svc_kit *k, struct db_conn *c, const struct net_req *req,
                    const char *action, const char *resource, const char *outcome)
{
    ot_err err = db_begin(c);

    if (err == OT_OK) {
        err = svc_audit(k, c, req, action, resource, outcome);
    }
    if (err == OT_OK) {
        err = db_commit(c);
    }
    if (err != OT_OK && db_in_txn(c)) {
        (void)db_rollback(c);
    }
    return err;
}

ot_err svc_authz(struct svc_kit *k, const struct net_req *req, enum svc_access acc, int64_t owner,
                 const char *action)
{
    const struct net_principal *p = net_req_principal(req);
    struct audit_entry e;

    if (p == NULL) {
        return OT_E_AUTH;
    }
    if (p->kind == NET_P_OPERATOR) {
        return OT_OK;
    }
    if (acc == SVC_ACC_SHARED && p->kind == NET_P_SP) {
        return OT_OK;
    }
    if (acc == SVC_ACC_OWNED && p->id == owner) {
        return OT_OK;
    }
    /* Queued, written by the node's audit sealer: the denial costs the
     * request no commit, as a missing resource costs none (issue 9 point 4). */
    svc_audit_entry(req, action, net_req_path(req), "denied", &e);
    if (audit_enqueue(k->db, &e) != OT_OK) {
        OT_LOG_ERROR("req=%s audit of %s denial failed", e.request_id, action);
    }
    OT_LOG_INFO("req=%s principal=%lld denied %s on %s", net_req_request_id(req), (long long)p->id,
                action, net_req_path(req));
    return OT_E_NOT_FOUND;
}

/* ---- parsing ------------------------------------------------------------ */

json_t *svc_body_obj(const struct net_req *req, struct net_resp *resp, const char *const *allowed)
{
    struct json_err jerr;
    json_t *doc = NULL;
    ot_err err;

    memset(&jerr, 0, sizeof(jerr));
    err = net_req_json(req, &doc, &jerr);
    if (err != OT_OK) {
        net_resp_json_error(resp, err, &jerr);
        return NULL;
    }
    if (!json_is_obj(doc)) {
        json_free(doc);
        net_resp_error(resp, OT_E_FORMAT, NULL, "the body must be a JSON object", NULL);
        return NULL;
    }
    err = json_check_fields(doc, allowed, "", &jerr);
    if (err != OT_OK) {
        json_free(doc);
        net_resp_json_error(resp, err, &jerr);
        return NULL;
    }
    return doc;
}

struct svc_qcheck {
    const struct net_req *req;
    const char *bare; /* the first argument without a value */
};

/* The iteration gives "" for "?name" and for "?name="; the lookup tells
 * them apart (NULL: no "="). */
static void svc_qcheck_one(void *ctx, const char *key, const char *value)
{
    struct svc_qcheck *q = ctx;

    (void)value;
    if (q->bare == NULL && net_req_query(q->req, key) == NULL) {
        q->bare = key;
    }
}

bool svc_query_has_values(const struct net_req *req, struct net_resp *resp)
{
    struct svc_qcheck q = {req, NULL};
    char msg[200];

    net_req_foreach_query(req, svc_qcheck_one, &q);
    if (q.bare == NULL) {
        return true;
    }
    snprintf(msg, sizeof(msg), "query argument %.64s needs a value (%.64s=...)", q.bare, q.bare);
    net_resp_error(resp, OT_E_FORMAT, NULL, msg, q.bare);
    return false;
}

bool svc_id_parse(const char *s, int64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (s == NULL || s[0] < '1' || s[0] > '9') {
        return false;
    }
    for (i = 0; s[i] != '\0'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (s[i] < '0' || s[i] > '9' || v > ((uint64_t)INT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *out = (int64_t)v;
    return true;
}

bool svc_id_of_path(const struct net_req *req, struct net_resp *resp, const char *name, int64_t *id)
{
    if (!svc_id_parse(net_req_param(req, name), id)) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, NULL, NULL);
        return false;
    }
    return true;
}

bool svc_id_of_query(const struct net_req *req, struct net_resp *resp, const char *name,
                     int64_t *id)
{
    const char *s = net_req_query(req, name);
    char msg[96];

    *id = 0;
    if (s == NULL) {
        return true;
    }
    if (!svc_id_parse(s, id)) {
        snprintf(msg, sizeof(msg), "%s must be a positive decimal integer", name);
        net_resp_error(resp, OT_E_FORMAT, NULL, msg, name);
        return false;
    }
    return true;
}

bool svc_page_of_query(const struct net_req *req, struct net_resp *resp, unsigned def, unsigned max,
                       size_t *limit, int64_t *after)
{
    struct json_page page;
    struct json_err jerr;
    ot_err err;

    memset(&jerr, 0, sizeof(jerr));
    err = json_page_parse(net_req_query(req, "cursor"), net_req_query(req, "limit"), def, max,
                          &page, &jerr);
    if (err != OT_OK) {
        net_resp_json_error(resp, err, &jerr);
        return false;
    }
    if (page.after_len != 0 && page.after_len != 8) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "bad cursor", "cursor");
        return false;
    }
    *after = 0;
    if (page.after_len == 8) {
        *after =
            (int64_t)(((uint64_t)ot_get_u32be(page.after) << 32) | ot_get_u32be(page.after + 4));
        if (*after < 0) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "bad cursor", "cursor");
            return false;
        }
    }
    *limit = page.limit;
    return true;
}

static ot_err svc_put_col(struct db_stmt *st, int col, const struct svc_col *d, json_t *o)
{
    const char *t = NULL;
    const uint8_t *p = NULL;
    size_t pn = 0;
    int64_t v = 0;
    json_t *j = NULL;
    char id[24];
    ot_err err = OT_OK;

    if (d->kind == SVC_COL_SKIP || d->key == NULL) {
        return OT_OK;
    }
    if (db_col_is_null(st, col)) {
        return (d->flags & SVC_COL_OMIT_NULL) != 0 ? OT_OK : json_put_null(o, d->key);
    }
    switch (d->kind) {
    case SVC_COL_INT:
    case SVC_COL_ID:
    case SVC_COL_BOOL:
        OT_TRY(db_col_int64(st, col, &v));
        if (d->kind == SVC_COL_INT) {
            err = json_put_int(o, d->key, v);
        } else if (d->kind == SVC_COL_BOOL) {
            err = json_put_bool(o, d->key, v != 0);
        } else {
            snprintf(id, sizeof(id), "%lld", (long long)v);
            err = json_put_str(o, d->key, id);
        }
        break;
    case SVC_COL_TEXT:
        OT_TRY(db_col_text(st, col, &t));
        if (t[0] == '\0' && (d->flags & SVC_COL_EMPTY_NULL) != 0) {
            err = json_put_null(o, d->key);
        } else {
            err = json_put_str(o, d->key, t);
        }
        break;
    case SVC_COL_HEX:
        OT_TRY(db_col_blob(st, col, &p, &pn));
        err = json_put_hex(o, d->key, p, pn);
        break;
    case SVC_COL_JSON:
        OT_TRY(db_col_text(st, col, &t));
        if (json_parse(t, strlen(t), SVC_COL_JSON_MAX, &j, NULL) == OT_OK) {
            err = json_put(o, d->key, j);
        } else {
            err = json_put_str(o, d->key, t);
        }
        break;
    default:
        err = OT_E_ARG;
        break;
    }
out:
    return err;
}

ot_err svc_row_json(struct db_stmt *st, const struct svc_col *cols, size_t n, json_t **item)
{
    json_t *o = json_obj_new();
    ot_err err = OT_OK;

    *item = NULL;
    if (o == NULL) {
        return OT_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        OT_TRY(svc_put_col(st, (int)i, &cols[i], o));
    }
    *item = o;
    o = NULL;
out:
    json_free(o);
    return err;
}

void svc_list_page(struct db *db, const struct net_req *req, struct net_resp *resp,
                   const struct svc_list *l)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    json_t *arr = NULL;
    int64_t *ids = NULL;
    size_t limit = 0;
    size_t n = 0;
    int64_t after = 0;
    int64_t last = 0;
    bool row = false;
    bool more = false;
    ot_err err = OT_OK;

    if (!svc_page_of_query(req, resp, SVC_LIST_DEF, SVC_LIST_MAX, &limit, &after)) {
        return;
    }
    arr = json_arr_new();
    if (arr == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(db_acquire(db, &c));
    OT_TRY(db_prepare(c, l->sql, &st));
    OT_TRY(db_bind_int64(st, 1, after));
    OT_TRY(db_bind_int64(st, 2, (int64_t)limit + 1));
    if (l->bind != NULL) {
        OT_TRY(l->bind(st, l->ctx));
    }
    if (l->expand != NULL) {
        ids = calloc(limit, sizeof(*ids));
        if (ids == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
    }
    for (;;) {
        json_t *item = NULL;
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        if (n == limit) {
            more = true;
            break;
        }
        OT_TRY(db_col_int64(st, 0, &last));
        if (ids != NULL) {
            ids[n++] = last;
            continue;
        }
        if (l->row != NULL) {
            OT_TRY(l->row(st, l->ctx, &item));
        } else {
            OT_TRY(svc_row_json(st, l->cols, l->ncols, &item));
        }
        OT_TRY(json_push(arr, item));
        n++;
    }
    db_reset(st);
    st = NULL;
    for (size_t i = 0; ids != NULL && i < n; i++) {
        json_t *item = NULL;
        OT_TRY(l->expand(c, l->ctx, ids[i], &item));
        OT_TRY(json_push(arr, item));
    }
    db_release(c);
    c = NULL;
    OT_TRY(svc_send_list(resp, &arr, more ? last : 0));
out:
    db_reset(st);
    db_release(c);
    free(ids);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
    json_free(arr);
}

/* ---- answers ------------------------------------------------------------ */

ot_err svc_put_next_cursor(json_t *o, int64_t next)
{
    uint8_t cur[8];

    if (next == 0) {
        return json_put_cursor(o, "next_cursor", NULL, 0);
    }
    ot_put_u32be(cur, (uint32_t)((uint64_t)next >> 32));
    ot_put_u32be(cur + 4, (uint32_t)next);
    return json_put_cursor(o, "next_cursor", cur, sizeof(cur));
}

ot_err svc_send_list(struct net_resp *resp, json_t **items, int64_t next)
{
    json_t *o = json_obj_new();
    json_t *arr = *items;
    ot_err err = OT_OK;

    *items = NULL;
    if (o == NULL) {
        json_free(arr);
        return OT_E_NOMEM;
    }
    OT_TRY(json_put(o, "items", arr));
    OT_TRY(svc_put_next_cursor(o, next));
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    json_free(o);
    return err;
}

void svc_fail(struct net_resp *resp, ot_err err)
{
    net_resp_error(resp, err, NULL, NULL, NULL);
}

/* ---- one transaction per change ---------------------------------------- */

ot_err svc_tx_begin(struct svc_kit *k, struct db_conn **c)
{
    ot_err err = OT_OK;

    *c = NULL;
    OT_TRY(db_acquire(k->db, c));
    OT_TRY(db_begin(*c));
out:
    if (err != OT_OK) {
        db_release(*c);
        *c = NULL;
    }
    return err;
}

void svc_tx_abort(struct db_conn **c)
{
    if (*c != NULL) {
        (void)db_rollback(*c);
        db_release(*c);
        *c = NULL;
    }
}

ot_err svc_tx_commit_audited(struct db_conn *c, struct net_req *req)
{
    bool audited = db_txn_audit_rows(c) > 0;
    ot_err err = db_commit(c);

    if (err == OT_OK && audited) {
        net_req_change_audited(req);
    }
    return err;
}

ot_err svc_tx_commit(struct db_conn **c, struct net_req *req, struct net_resp *resp, int status,
                     json_t *o)
{
    const struct net_principal *p = net_req_principal(req);
    const char *key = NULL;
    const uint8_t *hash = NULL;
    char *body = NULL;
    size_t len = 0;
    bool idem = net_req_idem(req, &key, &hash);
    bool taken = false; /* the key's record exists already */
    ot_err err = OT_OK;

    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(json_serialize(o, &body, &len));
    if (idem) {
        if (p == NULL) {
            OT_FAIL(OT_E_INTERNAL);
        }
        /* OT_E_CONFLICT: another request with this key (another process
         * on this database) committed first; the retry replays its answer. */
        err = idem_put_tx(*c, p->id, key, hash, status, NULL, body, len, NULL);
        taken = err == OT_E_CONFLICT;
        OT_TRY(err);
    }
    OT_TRY(svc_tx_commit_audited(*c, req)); /* the host's request row would repeat its audit row */
    db_release(*c);
    *c = NULL;
    if (idem) {
        net_req_idem_stored(req);
    }
    net_resp_bytes(resp, status, "application/json", body, len);
out:
    if (err != OT_OK) {
        svc_tx_abort(c);
        if (taken) {
            net_resp_error(resp, err, NULL, "a request with this Idempotency-Key is in progress",
                           SVC_IDEM_HEADER);
        } else {
            OT_LOG_ERROR("req_id=%s %s %s not committed: %s", net_req_request_id(req),
                         net_req_method(req), net_req_route(req), ot_strerror(err));
            svc_fail(resp, err);
        }
    }
    if (body != NULL) {
        ot_mem_wipe(body, len); /* may hold a token */
    }
    free(body);
    json_free(o);
    return err;
}
