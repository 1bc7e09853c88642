/* mno backstage (seed 001, docs/ota.md §7): the platform asks a device's
 * agent to add, verify, query or delete an SE; the agent answers with its
 * whole SE list, which becomes the device's mirror. */
#define OT_LOG_COMPONENT "mno"
#include "core/hex.h"
#include "core/log.h"
#include "db/db.h"
#include "mno/mno_priv.h"
#include "svc/kit.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mno_bs_ops[] = {"add", "verify", "query", "delete"};

static ot_err mno_bs_json(struct mno *m, struct db_conn *c, int64_t id, int64_t device_only,
                          json_t **out)
{
    struct db_stmt *st = NULL;
    json_t *o = NULL;
    bool row = false;
    char buf[24];
    ot_err err = OT_OK;

    *out = NULL;
    OT_TRY(db_prepare(c,
                      "SELECT device_id, op, cin, reader, state, error, result, created_at,"
                      " answered_at, instance FROM mno_backstage WHERE id = $1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (!row || !mno_row_instance(m, st, 9)) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    {
        int64_t v = 0;
        const char *t = NULL;
        json_t *se;
        OT_TRY(db_col_int64(st, 0, &v));
        if (device_only != 0 && v != device_only) {
            OT_FAIL(OT_E_NOT_FOUND);
        }
        o = json_obj_new();
        se = json_obj_new();
        if (o == NULL || se == NULL) {
            json_free(se);
            OT_FAIL(OT_E_NOMEM);
        }
        snprintf(buf, sizeof(buf), "%lld", (long long)id);
        OT_TRY(json_put_str(o, "id", buf));
        snprintf(buf, sizeof(buf), "%lld", (long long)v);
        OT_TRY(json_put_str(o, "device", buf));
        OT_TRY(db_col_text(st, 1, &t));
        OT_TRY(json_put_str(o, "op", t));
        OT_TRY(json_put(o, "se", se));
        OT_TRY(mno_put_blob_hex(st, 2, se, "cin"));
        OT_TRY(db_col_text(st, 3, &t));
        OT_TRY(json_put_str(se, "reader", t));
        OT_TRY(db_col_text(st, 4, &t));
        OT_TRY(json_put_str(o, "state", t));
        OT_TRY(db_col_text(st, 5, &t));
        OT_TRY(json_put_str(o, "error", t));
        OT_TRY(db_col_text(st, 6, &t));
        if (t != NULL) {
            json_t *r = json_loads(t, 0, NULL);
            OT_TRY(json_put(o, "secure_elements", r != NULL ? r : json_null()));
        } else {
            OT_TRY(json_put_null(o, "secure_elements"));
        }
        OT_TRY(db_col_int64(st, 7, &v));
        OT_TRY(json_put_int(o, "created_at", v));
        OT_TRY(
            db_col_is_null(st, 8)
                ? json_put_null(o, "answered_at")
                : (db_col_int64(st, 8, &v) == OT_OK ? json_put_int(o, "answered_at", v) : OT_E_DB));
    }
    *out = o;
    o = NULL;
out:
    db_reset(st);
    json_free(o);
    return err;
}

/* POST /devices/{id}/backstage {"op", "se"?}: a request to the agent. */
void mno_h_bs_ask(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"op", "se", NULL};
    static const char *const se_allowed[] = {"cin", "reader", NULL};
    struct mno *m = ctx;
    struct json_err jerr;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    const json_t *se = NULL;
    const char *reader = NULL;
    uint8_t cin[MNO_CIN_MAX];
    size_t cin_n = sizeof(cin);
    bool has_cin = false;
    size_t op = 0;
    int64_t device_id = 0;
    int64_t id = 0;
    bool row = false;
    char res[96];
    char hex[MNO_CIN_MAX * 2 + 1];
    char data[256];
    json_t *doc;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    if (!svc_id_of_path(req, resp, "id", &device_id)) {
        return;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_enum(doc, "op", mno_bs_ops, 4, &op, &jerr) != OT_OK
        || json_opt_obj(doc, "se", &se, &jerr) != OT_OK
        || (se != NULL
            && (json_check_fields(se, se_allowed, "se", &jerr) != OT_OK
                || json_opt_hex(se, "cin", 1, MNO_CIN_MAX, cin, &cin_n, &has_cin, &jerr) != OT_OK
                || json_opt_str(se, "reader", 1, MNO_READER_MAX, &reader, &jerr) != OT_OK))) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto done;
    }
    if (reader != NULL && !mno_reader_ok(reader)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "1 to 32 of A-Z a-z 0-9 . _ -", "se.reader");
        goto done;
    }
    /* add names a reader (the agent discovers the card there); verify and
     * delete name the SE by reader or CIN; query needs neither. */
    if ((op == 0 && reader == NULL) || ((op == 1 || op == 3) && reader == NULL && !has_cin)) {
        net_resp_error(resp, OT_E_FORMAT, NULL,
                       op == 0 ? "add names the reader" : "name the SE by cin or reader", "se");
        goto done;
    }
    OT_TRY(svc_tx_begin(m->kit, &c));
    OT_TRY(db_prepare(c, "SELECT 1 FROM mno_devices WHERE instance = $1 AND id = $2", &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, device_id));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    if (!row) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such device", NULL);
        goto done;
    }
    OT_TRY(db_prepare(c,
                      "INSERT INTO mno_backstage (instance, device_id, op, cin, reader, state,"
                      " requester, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)"
                      " RETURNING id",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, device_id));
    OT_TRY(db_bind_text(st, 3, mno_bs_ops[op]));
    OT_TRY(has_cin ? db_bind_blob(st, 4, cin, cin_n) : db_bind_null(st, 4));
    OT_TRY(db_bind_text(st, 5, reader));
    OT_TRY(db_bind_int64(st, 6, net_req_principal(req)->id));
    OT_TRY(db_bind_int64(st, 7, mno_now()));
    OT_TRY(db_step(st, &row));
    OT_TRY(db_col_int64(st, 0, &id));
    db_reset(st);
    st = NULL;
    OT_TRY(has_cin ? hex_encode(cin, cin_n, hex, sizeof(hex)) : OT_OK);
    /* reader and hex hold only [A-Za-z0-9._-]: no JSON escapes. */
    snprintf(data, sizeof(data),
             "{\"request\":\"%lld\",\"op\":\"%s\",\"se\":{\"cin\":%s%s%s,\"reader\":%s%s%s}}",
             (long long)id, mno_bs_ops[op], has_cin ? "\"" : "", has_cin ? hex : "null",
             has_cin ? "\"" : "", reader ? "\"" : "", reader ? reader : "null", reader ? "\"" : "");
    OT_TRY(mno_event_add(m, c, device_id, "backstage", data));
    snprintf(res, sizeof(res), "%s/backstage/%lld", m->prefix, (long long)id);
    OT_TRY(svc_audit(m->kit, c, req, "mno.backstage.ask", res, mno_bs_ops[op]));
    OT_TRY(mno_bs_json(m, c, id, 0, &o));
    (void)svc_tx_commit(&c, req, resp, 201, o);
    o = NULL;
    mno_push_kick(m, device_id);
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    json_free(o);
    svc_tx_abort(&c);
    json_free(doc);
}

/* GET /backstage/{id}: the request and, once answered, the agent's list. */
void mno_h_bs_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct mno *m = ctx;
    struct db_conn *c = NULL;
    int64_t id = 0;
    json_t *o = NULL;
    ot_err err = OT_OK;

    if (!svc_id_of_path(req, resp, "id", &id)) {
        return;
    }
    OT_TRY(db_acquire(m->db, &c));
    OT_TRY(mno_bs_json(m, c, id, 0, &o));
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    db_release(c);
    json_free(o);
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such request" : NULL, NULL);
    }
}

/* POST /device/backstage/{id} {"status","error","secure_elements"}: the
 * agent's answer; the first one counts, a repeat is ignored. */
void mno_h_bs_answer(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"status", "error", "secure_elements", NULL};
    static const char *const statuses[] = {"ok", "failed"};
    struct mno *m = ctx;
    struct json_err jerr;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct mno_device d;
    struct mno_se *ses = NULL;
    size_t n = 0;
    size_t bad = 0;
    size_t status = 0;
    const char *error = NULL;
    const char *state = NULL;
    char *list = NULL;
    int64_t id = 0;
    bool row = false;
    char res[96];
    json_t *doc;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    if (!svc_id_of_path(req, resp, "id", &id)) {
        return;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_enum(doc, "status", statuses, 2, &status, &jerr) != OT_OK
        || (!json_is_null(json_object_get(doc, "error"))
            && json_opt_str(doc, "error", 1, 200, &error, &jerr) != OT_OK)) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto done;
    }
    if (!mno_ses_parse(doc, "secure_elements", resp, &ses, &n)) {
        goto done;
    }
    OT_TRY(svc_tx_begin(m->kit, &c));
    err = mno_device_of_caller(m, c, req, &d);
    if (err == OT_OK) {
        err = mno_bs_json(m, c, id, d.id, &o);
    }
    if (err == OT_E_NOT_FOUND) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such request", NULL);
        err = OT_OK;
        goto done;
    }
    OT_TRY(err);
    state = json_string_value(json_object_get(o, "state"));
    if (state == NULL || strcmp(state, "pending") != 0) {
        (void)svc_tx_commit(&c, req, resp, 200, o); /* the first answer counts */
        o = NULL;
        goto done;
    }
    json_free(o);
    o = NULL;
    err = mno_ses_store(m, c, d.id, ses, n, &bad);
    if (err == OT_E_FORMAT) {
        char f[48];
        snprintf(f, sizeof(f), "secure_elements[%zu].cin", bad);
        net_resp_error(resp, OT_E_FORMAT, NULL, "this CIN is not known for this device", f);
        err = OT_OK;
        goto done;
    }
    OT_TRY(err);
    {
        size_t len = 0;
        OT_TRY(json_serialize(json_object_get(doc, "secure_elements"), &list, &len));
    }
    OT_TRY(db_prepare(c,
                      "UPDATE mno_backstage SET state = $1, error = $2, result = $3,"
                      " answered_at = $4 WHERE id = $5 AND state = 'pending'",
                      &st));
    OT_TRY(db_bind_text(st, 1, statuses[status]));
    OT_TRY(db_bind_text(st, 2, error));
    OT_TRY(db_bind_text(st, 3, list));
    OT_TRY(db_bind_int64(st, 4, mno_now()));
    OT_TRY(db_bind_int64(st, 5, id));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "%s/backstage/%lld", m->prefix, (long long)id);
    OT_TRY(svc_audit(m->kit, c, req, "mno.backstage.answer", res, statuses[status]));
    OT_TRY(mno_bs_json(m, c, id, d.id, &o));
    (void)svc_tx_commit(&c, req, resp, 200, o);
    o = NULL;
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    free(list);
    free(ses);
    json_free(o);
    svc_tx_abort(&c);
    json_free(doc);
}
