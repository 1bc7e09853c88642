/* mno jobs: submission, results, cancel, interactive batches, resolution of
 * an unknown outcome, and the EXTERNAL AUTHENTICATE alerts (DESIGN.md 3,
 * docs/mno.md). */
#define OT_LOG_COMPONENT "mno"
#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "db/db.h"
#include "mno/mno_priv.h"
#include "mno/mno_script.h"
#include "svc/kit.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MNO_SCRIPT_BYTES_MAX ((size_t)512 * 1024)

/* Parses "apdus" (hex strings or {"capdu","expect"}) into a command script. */
static ot_err mno_apdus_script(const json_t *doc, bool cont, struct ot_buf *out,
                               struct json_err *jerr)
{
    static const char *const allowed[] = {"capdu", "expect", NULL};
    const json_t *arr = NULL;
    size_t n = 0;
    struct mno_item *items = NULL;
    uint8_t *bytes = NULL;
    size_t used = 0;
    size_t cap = 0;
    struct mno_script chk;
    struct mno_script_err serr;
    ot_err err;

    err = json_get_array(doc, "apdus", 1, MNO_SCRIPT_MAX_APDUS, &arr, &n, jerr);
    if (err != OT_OK) {
        return err;
    }
    items = calloc(n, sizeof(*items));
    /* Decoded bytes never exceed half the hex text: bound by the body. */
    for (size_t i = 0; i < n; i++) {
        const json_t *it = json_at(arr, i);
        const char *c = json_is_string(it) ? json_string_value(it) : NULL;
        const char *e = NULL;
        if (c == NULL && json_is_obj(it)) {
            json_err_scope(jerr, "apdus[%zu]", i);
            err = json_check_fields(it, allowed, NULL, jerr);
            if (err == OT_OK) {
                err = json_get_str(it, "capdu", 8, MNO_CAPDU_MAX * 2, &c, jerr);
            }
            if (err == OT_OK) {
                err = json_opt_str(it, "expect", 4, MNO_RAPDU_MAX * 2, &e, jerr);
            }
            json_err_scope(jerr, "%s", "");
            if (err != OT_OK) {
                goto out;
            }
        }
        if (c == NULL) {
            err = json_err_set(jerr, OT_E_FORMAT, "", "apdus[%zu] must be hex or an object", i);
            goto out;
        }
        cap += strlen(c) / 2 + (e != NULL ? strlen(e) / 2 : 0) + 2;
    }
    bytes = malloc(cap ? cap : 1);
    if (items == NULL || bytes == NULL) {
        err = OT_E_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *it = json_at(arr, i);
        const char *c = json_is_string(it) ? json_string_value(it)
                                           : json_string_value(json_object_get(it, "capdu"));
        const char *e =
            json_is_string(it) ? NULL : json_string_value(json_object_get(it, "expect"));
        size_t bn = cap - used;
        char f[40];
        snprintf(f, sizeof(f), "apdus[%zu]", i);
        if (hex_decode(c, strlen(c), bytes + used, &bn) != OT_OK || bn < MNO_CAPDU_MIN
            || bn > MNO_CAPDU_MAX) {
            err = json_err_set(jerr, OT_E_FORMAT, f, "a C-APDU is 4 to 65544 bytes of hex");
            goto out;
        }
        items[i].p = bytes + used;
        items[i].n = bn;
        used += bn;
        if (e != NULL) {
            bn = cap - used;
            if (hex_decode(e, strlen(e), bytes + used, &bn) != OT_OK || bn < MNO_RAPDU_MIN) {
                snprintf(f, sizeof(f), "apdus[%zu].expect", i);
                err = json_err_set(jerr, OT_E_FORMAT, f, "an R-APDU is 2 to 65538 bytes of hex");
                goto out;
            }
            items[i].guard = bytes + used;
            items[i].guard_n = bn;
            used += bn;
        }
    }
    err = mno_cmd_build(cont, items, n, out);
    if (err == OT_OK) {
        err = mno_cmd_parse(out->data, out->len, &chk, &serr);
        if (err == OT_E_FORMAT) {
            err = json_err_set(jerr, OT_E_FORMAT, "apdus", "%s", serr.msg);
        }
        mno_script_free(&chk);
    }
out:
    free(items);
    free(bytes);
    return err;
}

/* The SE's open alert (jobs stopped): true when one is there. */
static ot_err mno_se_blocked(struct mno *m, struct db_conn *c, const uint8_t *cin, size_t n,
                             bool *blocked)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    *blocked = false;
    if (cin == NULL) {
        return OT_OK;
    }
    OT_TRY(db_prepare(
        c, "SELECT 1 FROM mno_alerts WHERE instance = $1 AND cin = $2 AND cleared = 0", &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_blob(st, 2, cin, n));
    OT_TRY(db_step(st, &row));
    *blocked = row;
out:
    db_reset(st);
    return err;
}

/* The job as JSON (every script with its R-APDUs). */
ot_err mno_job_json(struct mno *m, struct db_conn *c, int64_t id, int64_t *submitter, json_t **out)
{
    struct db_stmt *st = NULL;
    json_t *o = json_obj_new();
    json_t *scripts = json_arr_new();
    bool row = false;
    char buf[24];
    ot_err err = OT_OK;

    *out = NULL;
    if (o == NULL || scripts == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(db_prepare(c,
                      "SELECT device_id, se_cin, se_reader, aid, interactive, state, priority,"
                      " expires_at, max_attempts, attempts, destructive, closed, submitter,"
                      " reason, stop_index, stop_sw, created_at, updated_at, session_no,"
                      " instance FROM mno_jobs WHERE id = $1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (!row || !mno_row_instance(m, st, 19)) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    {
        int64_t v = 0;
        const char *t = NULL;
        const uint8_t *p = NULL;
        size_t n = 0;
        json_t *se = json_obj_new();
        snprintf(buf, sizeof(buf), "%lld", (long long)id);
        OT_TRY(json_put_str(o, "id", buf));
        OT_TRY(db_col_int64(st, 0, &v));
        snprintf(buf, sizeof(buf), "%lld", (long long)v);
        OT_TRY(json_put_str(o, "device", buf));
        OT_TRY(json_put(o, "se", se)); /* takes se, on failure too */
        OT_TRY(db_col_blob(st, 1, &p, &n));
        OT_TRY(p != NULL ? json_put_hex(se, "cin", p, n) : json_put_null(se, "cin"));
        OT_TRY(db_col_text(st, 2, &t));
        OT_TRY(json_put_str(se, "reader", t));
        OT_TRY(db_col_blob(st, 3, &p, &n));
        OT_TRY(json_put_hex(o, "aid", p, n));
        OT_TRY(db_col_int64(st, 4, &v));
        OT_TRY(json_put_str(o, "kind", v ? "interactive" : "scripted"));
        OT_TRY(db_col_text(st, 5, &t));
        OT_TRY(json_put_str(o, "state", t));
        OT_TRY(db_col_int64(st, 6, &v));
        OT_TRY(json_put_int(o, "priority", v));
        OT_TRY(db_col_int64(st, 7, &v));
        OT_TRY(json_put_int(o, "expires_at", v));
        OT_TRY(db_col_int64(st, 8, &v));
        OT_TRY(json_put_int(o, "max_attempts", v));
        OT_TRY(db_col_int64(st, 9, &v));
        OT_TRY(json_put_int(o, "attempts", v));
        OT_TRY(db_col_int64(st, 10, &v));
        OT_TRY(json_put_bool(o, "destructive", v != 0));
        OT_TRY(db_col_int64(st, 11, &v));
        OT_TRY(json_put_bool(o, "closed", v != 0));
        OT_TRY(db_col_int64(st, 12, submitter));
        OT_TRY(db_col_text(st, 13, &t));
        OT_TRY(json_put_str(o, "reason", t));
        if (db_col_is_null(st, 14)) {
            OT_TRY(json_put_null(o, "stop"));
        } else {
            json_t *stop = json_obj_new();
            char sw[8];
            OT_TRY(json_put(o, "stop", stop));
            OT_TRY(db_col_int64(st, 14, &v));
            OT_TRY(json_put_int(stop, "index", v));
            OT_TRY(db_col_int64(st, 15, &v));
            snprintf(sw, sizeof(sw), "%04X", (unsigned)v & 0xFFFFu);
            OT_TRY(json_put_str(stop, "sw", sw));
        }
        OT_TRY(db_col_int64(st, 16, &v));
        OT_TRY(json_put_int(o, "created_at", v));
        OT_TRY(db_col_int64(st, 17, &v));
        OT_TRY(json_put_int(o, "updated_at", v));
        OT_TRY(db_col_int64(st, 18, &v));
        OT_TRY(json_put_int(o, "session", v));
    }
    db_reset(st);
    st = NULL;
    OT_TRY(
        db_prepare(c, "SELECT seq, cmd, rsp FROM mno_scripts WHERE job_id = $1 ORDER BY seq", &st));
    OT_TRY(db_bind_int64(st, 1, id));
    for (;;) {
        const uint8_t *p = NULL;
        size_t n = 0;
        int64_t seq = 0;
        struct mno_script cmd;
        struct mno_script rsp;
        struct mno_script_err serr;
        json_t *so;
        json_t *ra;
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        so = json_obj_new();
        OT_TRY(json_push(scripts, so));
        OT_TRY(db_col_int64(st, 0, &seq));
        OT_TRY(json_put_int(so, "seq", seq));
        OT_TRY(db_col_blob(st, 1, &p, &n));
        OT_TRY(mno_cmd_parse(p, n, &cmd, &serr));
        OT_TRY(json_put_int(so, "capdus", (int64_t)cmd.n));
        OT_TRY(db_col_blob(st, 2, &p, &n));
        if (p == NULL) {
            mno_script_free(&cmd);
            OT_TRY(json_put_null(so, "rapdus"));
            continue;
        }
        err = mno_rsp_parse(p, n, cmd.n, &rsp, &serr);
        mno_script_free(&cmd);
        OT_TRY(err);
        ra = json_arr_new();
        err = json_put(so, "rapdus", ra);
        for (size_t i = 0; err == OT_OK && i < rsp.n; i++) {
            char *hex = malloc(rsp.items[i].n * 2 + 1);
            if (hex == NULL) {
                err = OT_E_NOMEM;
                break;
            }
            err = hex_encode(rsp.items[i].p, rsp.items[i].n, hex, rsp.items[i].n * 2 + 1);
            if (err == OT_OK && json_array_append_new(ra, json_string(hex)) != 0) {
                err = OT_E_NOMEM;
            }
            free(hex);
        }
        mno_script_free(&rsp);
        OT_TRY(err);
    }
    OT_TRY(json_put(o, "scripts", scripts));
    scripts = NULL;
    *out = o;
    o = NULL;
out:
    db_reset(st);
    json_free(o);
    json_free(scripts);
    return err;
}

static ot_err mno_script_add(struct db_conn *c, int64_t job_id, int64_t seq, const struct ot_buf *b)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(
        c, "INSERT INTO mno_scripts (job_id, seq, cmd, created_at) VALUES ($1, $2, $3, $4)", &st));
    OT_TRY(db_bind_int64(st, 1, job_id));
    OT_TRY(db_bind_int64(st, 2, seq));
    OT_TRY(db_bind_blob(st, 3, b->data, b->len));
    OT_TRY(db_bind_int64(st, 4, mno_now()));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

/* POST /jobs: a job is a row (with its first script) before it is
 * acknowledged; Idempotency-Key replays the first answer. */
void mno_h_job_submit(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {
        "device",   "msisdn", "se",           "kind",        "apdus", "continue_on_error",
        "priority", "ttl_s",  "max_attempts", "destructive", "aid",   "callback",
        NULL};
    static const char *const se_allowed[] = {"cin", "reader", NULL};
    static const char *const kinds[] = {"scripted", "interactive"};
    struct mno *m = ctx;
    const struct net_principal *p = net_req_principal(req);
    struct json_err jerr;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct ot_buf script;
    const json_t *se = NULL;
    const char *dev = NULL;
    const char *msisdn = NULL;
    const char *reader = NULL;
    const char *callback = NULL;
    uint8_t cin[MNO_CIN_MAX];
    size_t cin_n = sizeof(cin);
    bool has_cin = false;
    uint8_t aid[16];
    size_t aid_n = sizeof(aid);
    bool has_aid = false;
    size_t kind = 0;
    bool cont = false;
    bool destructive = false;
    int64_t priority = 5;
    int64_t ttl = 86400;
    int64_t max_attempts = 3;
    int64_t device_id = 0;
    int64_t job_id = 0;
    int64_t submitter = 0;
    int64_t now = mno_now();
    bool row = false;
    bool blocked = false;
    bool woke = false;
    char res[96];
    json_t *doc;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    ot_buf_init(&script, MNO_SCRIPT_BYTES_MAX);
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_opt_str(doc, "device", 1, 20, &dev, &jerr) != OT_OK
        || json_opt_str(doc, "msisdn", 5, MNO_DIGITS_MAX, &msisdn, &jerr) != OT_OK
        || json_get_obj(doc, "se", &se, &jerr) != OT_OK
        || json_check_fields(se, se_allowed, "se", &jerr) != OT_OK
        || json_opt_hex(se, "cin", 1, MNO_CIN_MAX, cin, &cin_n, &has_cin, &jerr) != OT_OK
        || json_opt_str(se, "reader", 1, MNO_READER_MAX, &reader, &jerr) != OT_OK
        || json_get_enum(doc, "kind", kinds, 2, &kind, &jerr) != OT_OK
        || json_opt_bool(doc, "continue_on_error", false, &cont, &jerr) != OT_OK
        || json_opt_bool(doc, "destructive", false, &destructive, &jerr) != OT_OK
        || json_opt_int(doc, "priority", 0, 9, 5, &priority, &jerr) != OT_OK
        || json_opt_int(doc, "ttl_s", 1, 30 * 86400, 86400, &ttl, &jerr) != OT_OK
        || json_opt_int(doc, "max_attempts", 1, 10, 3, &max_attempts, &jerr) != OT_OK
        || json_opt_hex(doc, "aid", 5, 16, aid, &aid_n, &has_aid, &jerr) != OT_OK
        || json_opt_str(doc, "callback", 8, MNO_CB_URL_MAX, &callback, &jerr) != OT_OK) {
        if (jerr.field[0] == 'c' && strcmp(jerr.field, "cin") == 0) {
            snprintf(jerr.field, sizeof(jerr.field), "se.cin");
        } else if (strcmp(jerr.field, "reader") == 0) {
            snprintf(jerr.field, sizeof(jerr.field), "se.reader");
        }
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto done;
    }
    if ((dev == NULL) == (msisdn == NULL)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "give exactly one of device and msisdn", "device");
        goto done;
    }
    if (dev != NULL && !svc_id_parse(dev, &device_id)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "a device id", "device");
        goto done;
    }
    if (msisdn != NULL && !mno_digits_ok(msisdn, 5, MNO_DIGITS_MAX)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "5 to 15 digits", "msisdn");
        goto done;
    }
    if (callback != NULL && !mno_cb_url_ok(callback)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "an http:// or https:// URL of printable ASCII",
                       "callback");
        goto done;
    }
    if (!has_cin && reader == NULL) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "name the SE by cin or reader", "se");
        goto done;
    }
    if (reader != NULL && !mno_reader_ok(reader)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "1 to 32 of A-Z a-z 0-9 . _ -", "se.reader");
        goto done;
    }
    if (!has_aid) {
        aid_n = sizeof(aid);
        (void)hex_decode(MNO_ISD_AID, strlen(MNO_ISD_AID), aid, &aid_n);
    }
    if (kind == 0 || json_object_get(doc, "apdus") != NULL) {
        err = mno_apdus_script(doc, cont, &script, &jerr);
        if (err == OT_E_FORMAT || err == OT_E_RANGE || err == OT_E_TOO_LONG) {
            net_resp_json_error(resp, OT_E_FORMAT, &jerr);
            err = OT_OK;
            goto done;
        }
        OT_TRY(err);
    }
    OT_TRY(svc_tx_begin(m->kit, &c));
    OT_TRY(db_prepare(c,
                      msisdn != NULL
                          ? "SELECT id FROM mno_devices WHERE instance = $1 AND msisdn = $2"
                          : "SELECT id FROM mno_devices WHERE instance = $1 AND id = $3",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    if (msisdn != NULL) {
        OT_TRY(db_bind_text(st, 2, msisdn));
    } else {
        OT_TRY(db_bind_int64(st, 3, device_id));
    }
    OT_TRY(db_step(st, &row));
    if (!row) {
        db_reset(st);
        st = NULL;
        net_resp_error(resp, OT_E_FORMAT, NULL, "no such device",
                       msisdn != NULL ? "msisdn" : "device");
        goto done;
    }
    OT_TRY(db_col_int64(st, 0, &device_id));
    db_reset(st);
    st = NULL;
    if (!has_cin) {
        /* The reader's SE on the device's mirrored list, when there. */
        const uint8_t *b = NULL;
        size_t bn = 0;
        OT_TRY(db_prepare(c,
                          "SELECT cin FROM mno_ses WHERE instance = $1 AND device_id = $2"
                          " AND reader = $3",
                          &st));
        OT_TRY(db_bind_text(st, 1, m->instance));
        OT_TRY(db_bind_int64(st, 2, device_id));
        OT_TRY(db_bind_text(st, 3, reader));
        OT_TRY(db_step(st, &row));
        if (row) {
            OT_TRY(db_col_blob(st, 0, &b, &bn));
            if (bn > 0 && bn <= sizeof(cin)) {
                memcpy(cin, b, bn);
                cin_n = bn;
                has_cin = true;
            }
        }
        db_reset(st);
        st = NULL;
    }
    OT_TRY(mno_se_blocked(m, c, has_cin ? cin : NULL, cin_n, &blocked));
    if (blocked) {
        net_resp_error(resp, OT_E_CONFLICT, "se_blocked",
                       "this SE's jobs are stopped after failed EXTERNAL AUTHENTICATEs", "se");
        goto done;
    }
    submitter = p != NULL ? p->id : 0;
    OT_TRY(db_prepare(c,
                      "INSERT INTO mno_jobs (instance, device_id, se_cin, se_reader, aid,"
                      " interactive, state, priority, expires_at, max_attempts, destructive,"
                      " submitter, created_at, updated_at, callback, cb_state) VALUES ($1, $2,"
                      " $3, $4, $5, $6, 'queued', $7, $8, $9, $10, $11, $12, $12, $13, $14)"
                      " RETURNING id",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, device_id));
    OT_TRY(has_cin ? db_bind_blob(st, 3, cin, cin_n) : db_bind_null(st, 3));
    OT_TRY(db_bind_text(st, 4, reader));
    OT_TRY(db_bind_blob(st, 5, aid, aid_n));
    OT_TRY(db_bind_int64(st, 6, kind == 1 ? 1 : 0));
    OT_TRY(db_bind_int64(st, 7, priority));
    OT_TRY(db_bind_int64(st, 8, now + ttl));
    OT_TRY(db_bind_int64(st, 9, max_attempts));
    OT_TRY(db_bind_int64(st, 10, destructive ? 1 : 0));
    OT_TRY(db_bind_int64(st, 11, submitter));
    OT_TRY(db_bind_int64(st, 12, now));
    OT_TRY(db_bind_text(st, 13, callback));
    OT_TRY(db_bind_text(st, 14, callback != NULL ? "wait" : NULL));
    OT_TRY(db_step(st, &row));
    OT_TRY(db_col_int64(st, 0, &job_id));
    db_reset(st);
    st = NULL;
    if (script.len > 0) {
        OT_TRY(mno_script_add(c, job_id, 1, &script));
    }
    /* An online idle device gets the job at once, in this transaction. */
    OT_TRY(mno_wake_device(m, c, device_id, &woke));
    snprintf(res, sizeof(res), "%s/jobs/%lld", m->prefix, (long long)job_id);
    OT_TRY(svc_audit(m->kit, c, req, "mno.job.submit", res, "ok"));
    OT_TRY(mno_job_json(m, c, job_id, &submitter, &o));
    err = svc_tx_commit(&c, req, resp, 201, o);
    o = NULL;
    if (err != OT_OK) {
        err = OT_OK; /* answered */
    } else if (woke) {
        mno_push_kick(m, device_id);
    } else {
        mno_sweep_kick_dev(m, device_id);
    }
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    ot_buf_free(&script);
    json_free(o);
    svc_tx_abort(&c);
    json_free(doc);
}

/* The job {id} of the path, checked against the caller (404 otherwise). */
static bool mno_job_of_path(struct mno *m, struct db_conn *c, struct net_req *req,
                            struct net_resp *resp, const char *action, int64_t *id, json_t **job)
{
    int64_t submitter = 0;
    ot_err err;

    *job = NULL;
    if (!svc_id_of_path(req, resp, "id", id)) {
        return false;
    }
    err = mno_job_json(m, c, *id, &submitter, job);
    if (err == OT_OK) {
        err = svc_authz(m->kit, req, SVC_ACC_OWNED, submitter, action);
    }
    if (err != OT_OK) {
        json_free(*job);
        *job = NULL;
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such job" : NULL, NULL);
        return false;
    }
    return true;
}

/* Whether a waiter for job (its JSON) is answered: the job is no longer
 * pending (seq 0), or script seq has its responses. */
static bool mno_job_ready(const json_t *job, int64_t seq)
{
    const char *state = json_string_value(json_object_get(job, "state"));
    const json_t *scripts = json_object_get(job, "scripts");
    enum mno_job_state s;

    if (state == NULL || mno_job_state_parse(state, &s) != OT_OK || mno_job_terminal(s)
        || s == MNO_J_OUTCOME_UNKNOWN) {
        return true;
    }
    if (seq > 0) {
        for (size_t i = 0; i < json_array_size(scripts); i++) {
            const json_t *sc = json_array_get(scripts, i);
            if (json_integer_value(json_object_get(sc, "seq")) == seq) {
                return !json_is_null(json_object_get(sc, "rapdus"));
            }
        }
    }
    return false;
}

/* A submitter waiting for a job (long-poll). Refs: the table's and the
 * stream's (on_close). */
struct mno_waiter {
    struct mno_waiter *next;
    struct net_stream *s;
    int64_t job_id;
    int64_t seq;
    int64_t deadline;
    atomic_bool closed;
    atomic_int refs;
};

static void mno_waiter_unref(struct mno_waiter *w)
{
    if (atomic_fetch_sub(&w->refs, 1) == 1) {
        net_stream_release(w->s);
        free(w);
    }
}

static void mno_waiter_closed(void *ctx, struct net_stream *s)
{
    struct mno_waiter *w = ctx;

    (void)s;
    atomic_store(&w->closed, true);
    mno_waiter_unref(w);
}

/* The sweeper's pass over the waiters: answers those whose job is ready or
 * whose wait is over (200 with the job as it is), drops the closed ones. */
void mno_waiters_check(struct mno *m)
{
    struct mno_waiter *list;
    struct mno_waiter *keep = NULL;
    struct db_conn *c = NULL;
    int64_t now = mno_now();

    pthread_mutex_lock(&m->mu);
    list = m->waiters;
    m->waiters = NULL;
    m->waiters_busy = list != NULL;
    pthread_mutex_unlock(&m->mu);
    if (list != NULL && db_acquire(m->db, &c) != OT_OK) {
        c = NULL;
    }
    while (list != NULL) {
        struct mno_waiter *w = list;
        json_t *job = NULL;
        int64_t sub = 0;
        bool done = atomic_load(&w->closed);

        list = w->next;
        if (!done && c != NULL && mno_job_json(m, c, w->job_id, &sub, &job) == OT_OK
            && (mno_job_ready(job, w->seq) || now >= w->deadline)) {
            char *body = NULL;
            size_t len = 0;
            if (json_serialize(job, &body, &len) == OT_OK) {
                (void)net_stream_answer(w->s, 200, NULL, body, len);
            }
            free(body);
            done = true;
        }
        json_free(job);
        if (done) {
            mno_waiter_unref(w);
        } else {
            w->next = keep;
            keep = w;
        }
    }
    db_release(c);
    pthread_mutex_lock(&m->mu);
    if (keep != NULL) {
        struct mno_waiter **tail = &keep;
        while (*tail != NULL) {
            tail = &(*tail)->next;
        }
        *tail = m->waiters;
        m->waiters = keep;
    }
    m->waiters_busy = false;
    pthread_mutex_unlock(&m->mu);
}

bool mno_waiting_on(struct mno *m, int64_t job_id)
{
    bool yes;

    pthread_mutex_lock(&m->mu);
    /* Out of the list for a pass: the waiter may be among them, and that
     * pass may have read its job before this change. */
    yes = m->waiters_busy;
    for (const struct mno_waiter *w = m->waiters; w != NULL && !yes; w = w->next) {
        yes = w->job_id == job_id;
    }
    pthread_mutex_unlock(&m->mu);
    return yes;
}

void mno_waiters_drop(struct mno *m)
{
    while (m->waiters != NULL) {
        struct mno_waiter *w = m->waiters;
        m->waiters = w->next;
        mno_waiter_unref(w);
    }
}

/* GET /jobs/{id}[?wait=S[&seq=N]]: the job; with wait, answered once it is
 * no longer pending (or script N has its responses), or after S seconds. */
void mno_h_job_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct mno *m = ctx;
    struct db_conn *c = NULL;
    json_t *job = NULL;
    const char *wq = net_req_query(req, "wait");
    int64_t id = 0;
    int64_t wait = 0;
    int64_t seq = 0;
    ot_err err = OT_OK;

    if (wq != NULL && (!svc_id_parse(wq, &wait) || wait > 60)) {
        net_resp_error(resp, OT_E_RANGE, NULL, "seconds, 1 to 60", "wait");
        return;
    }
    if (!svc_id_of_query(req, resp, "seq", &seq)) {
        return;
    }
    OT_TRY(db_acquire(m->db, &c));
    if (mno_job_of_path(m, c, req, resp, "mno.job.get", &id, &job)) {
        if (wait == 0 || mno_job_ready(job, seq)) {
            net_resp_json(resp, 200, job);
        } else {
            struct mno_waiter *w = calloc(1, sizeof(*w));
            json_free(job);
            if (w == NULL) {
                OT_FAIL(OT_E_NOMEM);
            }
            w->job_id = id;
            w->seq = seq;
            w->deadline = mno_now() + wait;
            atomic_init(&w->closed, false);
            atomic_init(&w->refs, 2);
            /* The sweeper answers by the deadline; the server's own
             * timeout is the safety net. */
            w->s = net_resp_defer(resp, (unsigned)(wait + 10) * 1000u, 504, mno_waiter_closed, w);
            if (w->s == NULL) {
                free(w);
            } else {
                int64_t sub = 0;
                pthread_mutex_lock(&m->mu);
                w->next = m->waiters;
                m->waiters = w;
                pthread_mutex_unlock(&m->mu);
                /* The job may have become ready between the read above and
                 * the waiter's registration, its kick spent on a pass that
                 * did not see the waiter yet: read it again, and have it
                 * answered at once if so (else by the next periodic pass,
                 * sweep_ms later). */
                if (mno_job_json(m, c, id, &sub, &job) == OT_OK && mno_job_ready(job, seq)) {
                    mno_sweep_kick_dev(m, 0);
                }
                json_free(job);
                job = NULL;
            }
        }
    }
out:
    db_release(c);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

struct mno_job_list {
    struct mno *m;
    int64_t submitter; /* 0: every submitter's (operators) */
};

static ot_err mno_job_list_bind(struct db_stmt *st, void *ctx)
{
    const struct mno_job_list *jl = ctx;
    ot_err err = db_bind_text(st, 3, jl->m->instance);

    return err != OT_OK ? err : db_bind_int64(st, 4, jl->submitter);
}

static ot_err mno_job_list_expand(struct db_conn *c, void *ctx, int64_t id, json_t **item)
{
    const struct mno_job_list *jl = ctx;
    int64_t sub = 0;

    return mno_job_json(jl->m, c, id, &sub, item);
}

void mno_h_job_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    const struct net_principal *p = net_req_principal(req);
    struct mno_job_list jl = {
        .m = ctx,
        .submitter = p->kind == NET_P_OPERATOR ? 0 : p->id,
    };
    const struct svc_list l = {
        .sql = "SELECT id FROM mno_jobs WHERE id > $1 AND instance = $3"
               " AND ($4 = 0 OR submitter = $4) ORDER BY id LIMIT $2",
        .bind = mno_job_list_bind,
        .expand = mno_job_list_expand,
        .ctx = &jl,
    };

    svc_list_page(jl.m->db, req, resp, &l);
}

/* No more batches for interactive job id (in c's transaction). */
static ot_err mno_job_set_closed(struct db_conn *c, int64_t id)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c, "UPDATE mno_jobs SET closed = 1, updated_at = $1 WHERE id = $2", &st));
    OT_TRY(db_bind_int64(st, 1, mno_now()));
    OT_TRY(db_bind_int64(st, 2, id));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

enum mno_job_act {
    MNO_ACT_CANCEL,
    MNO_ACT_CLOSE,
    MNO_ACT_REQUEUE,
    MNO_ACT_ABANDON,
};

/* Cancel, close (interactive: no more batches), resolve. */
static void mno_job_act(struct net_req *req, struct net_resp *resp, struct mno *m,
                        enum mno_job_act act)
{
    static const char *const allowed_resolve[] = {"action", NULL};
    static const char *const allowed_none[] = {NULL};
    static const char *const actions[] = {"requeue", "fail"};
    static const char *const names[] = {"mno.job.cancel", "mno.job.close", "mno.job.requeue",
                                        "mno.job.abandon"};
    struct json_err jerr;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    json_t *job = NULL;
    json_t *doc;
    int64_t id = 0;
    int64_t sub = 0;
    int64_t device = 0;
    size_t which = 0;
    char res[96];
    const char *state;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    doc = svc_body_obj(req, resp, act == MNO_ACT_REQUEUE ? allowed_resolve : allowed_none);
    if (doc == NULL) {
        return;
    }
    if (act == MNO_ACT_REQUEUE) {
        if (json_get_enum(doc, "action", actions, 2, &which, &jerr) != OT_OK) {
            net_resp_json_error(resp, OT_E_FORMAT, &jerr);
            goto done;
        }
        if (which == 1) {
            act = MNO_ACT_ABANDON;
        }
    }
    OT_TRY(svc_tx_begin(m->kit, &c));
    if (!mno_job_of_path(m, c, req, resp, names[act], &id, &job)) {
        goto done;
    }
    state = json_string_value(json_object_get(job, "state"));
    (void)svc_id_parse(json_string_value(json_object_get(job, "device")), &device);
    if (act == MNO_ACT_CANCEL) {
        if (state != NULL && strcmp(state, "cancelled") != 0) {
            err = mno_job_move(m, c, id, MNO_EV_CANCEL, "cancelled");
        }
    } else if (act == MNO_ACT_CLOSE) {
        const char *kind = json_string_value(json_object_get(job, "kind"));
        if (kind == NULL || strcmp(kind, "interactive") != 0) {
            net_resp_error(resp, OT_E_STATE, NULL, "only an interactive job is closed", NULL);
            goto done;
        }
        OT_TRY(mno_job_set_closed(c, id));
        if (state != NULL && strcmp(state, "running") == 0) {
            /* Every script answered: the job is over now (the agent, held
             * or waiting after a 202, gets 204). */
            bool open_script = false;
            char data[64];
            OT_TRY(
                db_prepare(c, "SELECT 1 FROM mno_scripts WHERE job_id = $1 AND rsp IS NULL", &st));
            OT_TRY(db_bind_int64(st, 1, id));
            OT_TRY(db_step(st, &open_script));
            db_reset(st);
            st = NULL;
            if (!open_script) {
                char done_res[96];
                OT_TRY(mno_job_move(m, c, id, MNO_EV_FINISH, NULL));
                snprintf(done_res, sizeof(done_res), "%s/jobs/%lld", m->prefix, (long long)id);
                OT_TRY(svc_audit(m->kit, c, req, "mno.job.done", done_res, "ok"));
            }
            snprintf(data, sizeof(data), "{\"job\":\"%lld\"}", (long long)id);
            OT_TRY(mno_event_add(m, c, device, "batch", data));
        }
    } else {
        err = mno_job_move(m, c, id, act == MNO_ACT_REQUEUE ? MNO_EV_REQUEUE : MNO_EV_GIVE_UP,
                           act == MNO_ACT_REQUEUE ? "requeued by the submitter"
                                                  : "abandoned by the submitter");
    }
    if (err == OT_E_STATE) {
        char msg[96];
        snprintf(msg, sizeof(msg), "not possible in state %s", state != NULL ? state : "?");
        net_resp_error(resp, OT_E_STATE, NULL, msg, NULL);
        err = OT_OK;
        goto done;
    }
    OT_TRY(err);
    snprintf(res, sizeof(res), "%s/jobs/%lld", m->prefix, (long long)id);
    OT_TRY(svc_audit(m->kit, c, req, names[act], res, "ok"));
    json_free(job);
    job = NULL;
    OT_TRY(mno_job_json(m, c, id, &sub, &job));
    (void)svc_tx_commit(&c, req, resp, 200, job);
    job = NULL;
    mno_push_kick_held(m, device);
    (void)mno_held_touch(m, id, 0); /* closed, cancelled, resolved */
    mno_sweep_kick_dev(m, device);
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    json_free(job);
    svc_tx_abort(&c);
    json_free(doc);
}

void mno_h_job_cancel(struct net_req *req, struct net_resp *resp, void *ctx)
{
    mno_job_act(req, resp, ctx, MNO_ACT_CANCEL);
}

void mno_h_job_close(struct net_req *req, struct net_resp *resp, void *ctx)
{
    mno_job_act(req, resp, ctx, MNO_ACT_CLOSE);
}

void mno_h_job_resolve(struct net_req *req, struct net_resp *resp, void *ctx)
{
    mno_job_act(req, resp, ctx, MNO_ACT_REQUEUE);
}

/* POST /jobs/{id}/batches {"apdus", "continue_on_error"?, "close"?}: the
 * next command script of an interactive job (taken only when the previous
 * one has its responses); close: the last one (as POST /jobs/{id}/close
 * right after it, in the same transaction). */
void mno_h_job_batch(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"apdus", "continue_on_error", "close", NULL};
    struct mno *m = ctx;
    struct json_err jerr;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct ot_buf script;
    json_t *job = NULL;
    json_t *doc;
    json_t *o = NULL;
    int64_t id = 0;
    int64_t seq = 0;
    int64_t device = 0;
    bool cont = false;
    bool close_too = false;
    bool row = false;
    bool pending = false;
    char res[96];
    const char *state;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    ot_buf_init(&script, MNO_SCRIPT_BYTES_MAX);
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_opt_bool(doc, "continue_on_error", false, &cont, &jerr) != OT_OK
        || json_opt_bool(doc, "close", false, &close_too, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto done;
    }
    err = mno_apdus_script(doc, cont, &script, &jerr);
    if (err == OT_E_FORMAT || err == OT_E_RANGE || err == OT_E_TOO_LONG) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        err = OT_OK;
        goto done;
    }
    OT_TRY(err);
    OT_TRY(svc_tx_begin(m->kit, &c));
    if (!mno_job_of_path(m, c, req, resp, "mno.job.batch", &id, &job)) {
        goto done;
    }
    state = json_string_value(json_object_get(job, "state"));
    if (strcmp(json_string_value(json_object_get(job, "kind")), "interactive") != 0
        || json_is_true(json_object_get(job, "closed")) || state == NULL
        || !(strcmp(state, "queued") == 0 || strcmp(state, "delivering") == 0
             || strcmp(state, "running") == 0)) {
        net_resp_error(resp, OT_E_STATE, NULL,
                       "batches go to an open interactive job that has not ended", NULL);
        goto done;
    }
    OT_TRY(db_prepare(c,
                      "SELECT seq, CASE WHEN rsp IS NULL THEN 1 ELSE 0 END FROM mno_scripts WHERE "
                      "job_id = $1 ORDER BY seq"
                      " DESC LIMIT 1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (row) {
        int64_t nul = 0;
        OT_TRY(db_col_int64(st, 0, &seq));
        OT_TRY(db_col_int64(st, 1, &nul));
        pending = nul != 0;
    }
    db_reset(st);
    st = NULL;
    if (pending) {
        net_resp_error(resp, OT_E_CONFLICT, "batch_pending",
                       "the previous batch has no responses yet", NULL);
        goto done;
    }
    OT_TRY(mno_script_add(c, id, seq + 1, &script));
    if (close_too) {
        /* The last batch: the job ends with its responses (mno_after). */
        OT_TRY(mno_job_set_closed(c, id));
    }
    svc_id_parse(json_string_value(json_object_get(job, "device")), &device);
    if (strcmp(state, "running") == 0) {
        char data[64];
        snprintf(data, sizeof(data), "{\"job\":\"%lld\"}", (long long)id);
        OT_TRY(mno_event_add(m, c, device, "batch", data));
    }
    snprintf(res, sizeof(res), "%s/jobs/%lld/batches/%lld", m->prefix, (long long)id,
             (long long)(seq + 1));
    OT_TRY(svc_audit(m->kit, c, req, "mno.job.batch", res, close_too ? "ok, closed" : "ok"));
    o = json_obj_new();
    if (o == NULL || json_put_int(o, "seq", seq + 1) != OT_OK) {
        OT_FAIL(OT_E_NOMEM);
    }
    (void)svc_tx_commit(&c, req, resp, 201, o);
    o = NULL;
    mno_push_kick_held(m, device);
    (void)mno_held_touch(m, id, 0);
    mno_sweep_kick_dev(m, device); /* an agent's POST held for this batch */
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    ot_buf_free(&script);
    json_free(o);
    json_free(job);
    svc_tx_abort(&c);
    json_free(doc);
}

/* GET /alerts: SEs whose jobs stopped after failed EXTERNAL AUTHENTICATEs. */
static const struct svc_col mno_alert_cols[] = {
    {"id", SVC_COL_ID, 0},        {"cin", SVC_COL_HEX, 0},      {"kvn", SVC_COL_INT, 0},
    {"failures", SVC_COL_INT, 0}, {"cleared", SVC_COL_BOOL, 0}, {"created_at", SVC_COL_INT, 0},
};

void mno_h_alerts(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct mno *m = ctx;
    const struct svc_list l = {
        .sql = "SELECT id, cin, kvn, failures, cleared, created_at FROM mno_alerts"
               " WHERE id > $1 AND instance = $3 ORDER BY id LIMIT $2",
        .bind = mno_list_bind_instance,
        .cols = mno_alert_cols,
        .ncols = SVC_NCOLS(mno_alert_cols),
        .ctx = m,
    };

    svc_list_page(m->db, req, resp, &l);
}

/* POST /alerts/{id}/clear: the operator lets the SE's jobs run again (its
 * failure counters start from zero). */
void mno_h_alert_clear(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {NULL};
    struct mno *m = ctx;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    int64_t id = 0;
    bool row = false;
    uint8_t cin[MNO_CIN_MAX];
    size_t cin_n = 0;
    char res[96];
    json_t *doc;
    json_t *o = NULL;
    ot_err err = OT_OK;

    if (!svc_id_of_path(req, resp, "id", &id)) {
        return;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    OT_TRY(svc_tx_begin(m->kit, &c));
    OT_TRY(db_prepare(c, "SELECT cin FROM mno_alerts WHERE id = $1 AND instance = $2", &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_bind_text(st, 2, m->instance));
    OT_TRY(db_step(st, &row));
    if (!row) {
        db_reset(st);
        st = NULL;
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such alert", NULL);
        goto done;
    }
    {
        const uint8_t *p = NULL;
        OT_TRY(db_col_blob(st, 0, &p, &cin_n));
        if (cin_n > sizeof(cin)) {
            OT_FAIL(OT_E_CORRUPT);
        }
        memcpy(cin, p, cin_n);
    }
    db_reset(st);
    st = NULL;
    OT_TRY(db_prepare(c, "UPDATE mno_alerts SET cleared = 1 WHERE id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    OT_TRY(db_prepare(c, "DELETE FROM mno_auth_failures WHERE instance = $1 AND cin = $2", &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_blob(st, 2, cin, cin_n));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "%s/alerts/%lld", m->prefix, (long long)id);
    OT_TRY(svc_audit(m->kit, c, req, "mno.alert.clear", res, "ok"));
    o = json_obj_new();
    if (o == NULL || json_put_bool(o, "cleared", true) != OT_OK) {
        OT_FAIL(OT_E_NOMEM);
    }
    (void)svc_tx_commit(&c, req, resp, 200, o);
    o = NULL;
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
