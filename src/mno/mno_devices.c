/* mno devices: enrolment, registration, heartbeat lease, location, detach,
 * status lookup, the SE list mirror, platform events (docs/ota.md §3, §7,
 * docs/mno.md). */
#define OT_LOG_COMPONENT "mno"
#include "core/hex.h"
#include "core/log.h"
#include "db/authstore.h"
#include "db/db.h"
#include "mno/mno_priv.h"
#include "svc/kit.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MNO_COLS \
    "id, principal_id, imei, imsi, msisdn, online, location_area, last_seen, lease_expires"

static ot_err mno_device_row(struct db_stmt *st, struct mno_device *d)
{
    size_t len;
    const char *la = NULL;
    int64_t on = 0;
    ot_err err = OT_OK;

    memset(d, 0, sizeof(*d));
    OT_TRY(db_col_int64(st, 0, &d->id));
    OT_TRY(db_col_int64(st, 1, &d->principal_id));
    len = sizeof(d->imei);
    OT_TRY(db_col_text_copy(st, 2, d->imei, &len));
    len = sizeof(d->imsi);
    OT_TRY(db_col_text_copy(st, 3, d->imsi, &len));
    len = sizeof(d->msisdn);
    OT_TRY(db_col_text_copy(st, 4, d->msisdn, &len));
    OT_TRY(db_col_int64(st, 5, &on));
    OT_TRY(db_col_text(st, 6, &la));
    snprintf(d->la, sizeof(d->la), "%s", la != NULL ? la : "");
    OT_TRY(db_col_int64(st, 7, &d->last_seen));
    OT_TRY(db_col_int64(st, 8, &d->lease_expires));
    d->online = on != 0;
out:
    return err;
}

static json_t *mno_device_json(const struct mno_device *d)
{
    json_t *o = json_obj_new();
    char id[24];

    snprintf(id, sizeof(id), "%lld", (long long)d->id);
    if (o == NULL || json_put_str(o, "id", id) != OT_OK
        || json_put_int(o, "principal_id", d->principal_id) != OT_OK
        || json_put_str(o, "imei", d->imei) != OT_OK || json_put_str(o, "imsi", d->imsi) != OT_OK
        || json_put_str(o, "msisdn", d->msisdn) != OT_OK
        || json_put_str(o, "state", d->online ? "online" : "offline") != OT_OK
        || json_put_str(o, "location_area", d->la[0] ? d->la : NULL) != OT_OK
        || (d->last_seen ? json_put_int(o, "last_seen", d->last_seen)
                         : json_put_null(o, "last_seen"))
               != OT_OK) {
        json_free(o);
        return NULL;
    }
    return o;
}

static ot_err mno_known_cins_json(struct mno *m, struct db_conn *c, int64_t device_id, json_t *o)
{
    struct db_stmt *st = NULL;
    json_t *arr = json_arr_new();
    bool row = false;
    ot_err err = OT_OK;

    if (arr == NULL) {
        return OT_E_NOMEM;
    }
    OT_TRY(db_prepare(c,
                      "SELECT cin FROM mno_known_cins WHERE instance = $1 AND device_id = $2"
                      " ORDER BY cin",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, device_id));
    for (;;) {
        const uint8_t *p = NULL;
        size_t n = 0;
        char hex[MNO_CIN_MAX * 2 + 1];
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        OT_TRY(db_col_blob(st, 0, &p, &n));
        OT_TRY(hex_encode(p, n, hex, sizeof(hex)));
        if (json_array_append_new(arr, json_string(hex)) != 0) {
            OT_FAIL(OT_E_NOMEM);
        }
    }
    err = json_put(o, "known_cins", arr);
    arr = NULL;
out:
    db_reset(st);
    json_free(arr);
    return err;
}

/* POST /devices {"principal_id", "msisdn", "cins"?}: the operator enrols a
 * device principal (kind device, mno = this instance) with its MSISDN; IMEI
 * and IMSI are the principal's attributes. */
void mno_h_enrol(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"principal_id", "msisdn", "cins", NULL};
    struct mno *m = ctx;
    struct json_err jerr;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct authstore_principal pr;
    struct authstore_attrs at;
    struct mno_device d;
    const json_t *cins = NULL;
    size_t n_cins = 0;
    const char *msisdn = NULL;
    int64_t pid = 0;
    bool row = false;
    char res[96];
    json_t *doc;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_int(doc, "principal_id", 1, INT64_MAX, &pid, &jerr) != OT_OK
        || json_get_str(doc, "msisdn", 5, MNO_DIGITS_MAX, &msisdn, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto done;
    }
    if (!mno_digits_ok(msisdn, 5, MNO_DIGITS_MAX)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "msisdn must be 5 to 15 digits", "msisdn");
        goto done;
    }
    if (json_object_get(doc, "cins") != NULL
        && json_get_array(doc, "cins", 0, MNO_SES_MAX, &cins, &n_cins, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto done;
    }
    for (size_t i = 0; i < n_cins; i++) {
        const char *h = json_string_value(json_at(cins, i));
        uint8_t b[MNO_CIN_MAX];
        size_t bl = sizeof(b);
        char f[32];
        snprintf(f, sizeof(f), "cins[%zu]", i);
        if (h == NULL || strlen(h) > MNO_CIN_MAX * 2 || hex_decode(h, strlen(h), b, &bl) != OT_OK
            || bl == 0) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "a CIN is 1 to 32 bytes of hex", f);
            goto done;
        }
    }
    OT_TRY(svc_tx_begin(m->kit, &c));
    err = authstore_get_principal_tx(m->auth, c, pid, &pr);
    if (err == OT_E_NOT_FOUND || (err == OT_OK && pr.kind != AUTHSTORE_DEVICE)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "no device principal with this id", "principal_id");
        err = OT_OK;
        goto done;
    }
    OT_TRY(err);
    OT_TRY(authstore_get_attrs(m->auth, c, pid, &at));
    if (strcmp(at.mno, m->instance) != 0 || at.imei[0] == '\0' || at.imsi[0] == '\0') {
        net_resp_error(resp, OT_E_FORMAT, NULL,
                       "the principal's mno attribute is not this instance, or it has no imei "
                       "and imsi",
                       "principal_id");
        goto done;
    }
    OT_TRY(db_prepare(c,
                      "INSERT INTO mno_devices (instance, principal_id, imei, imsi, msisdn,"
                      " created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, pid));
    OT_TRY(db_bind_text(st, 3, at.imei));
    OT_TRY(db_bind_text(st, 4, at.imsi));
    OT_TRY(db_bind_text(st, 5, msisdn));
    OT_TRY(db_bind_int64(st, 6, mno_now()));
    err = db_step(st, &row);
    if (err == OT_E_CONFLICT) {
        db_reset(st);
        st = NULL;
        net_resp_error(resp, OT_E_CONFLICT, NULL,
                       "this principal, IMEI, IMSI or MSISDN is enrolled already", NULL);
        err = OT_OK;
        goto done;
    }
    OT_TRY(err);
    memset(&d, 0, sizeof(d));
    OT_TRY(db_col_int64(st, 0, &d.id));
    db_reset(st);
    st = NULL;
    for (size_t i = 0; i < n_cins; i++) {
        const char *h = json_string_value(json_at(cins, i));
        uint8_t b[MNO_CIN_MAX];
        size_t bl = sizeof(b);
        OT_TRY(hex_decode(h, strlen(h), b, &bl));
        OT_TRY(db_prepare(
            c, "INSERT INTO mno_known_cins (instance, device_id, cin) VALUES ($1, $2, $3)", &st));
        OT_TRY(db_bind_text(st, 1, m->instance));
        OT_TRY(db_bind_int64(st, 2, d.id));
        OT_TRY(db_bind_blob(st, 3, b, bl));
        err = db_step(st, &row);
        db_reset(st);
        st = NULL;
        if (err == OT_E_CONFLICT) {
            char f[32];
            snprintf(f, sizeof(f), "cins[%zu]", i);
            net_resp_error(resp, OT_E_CONFLICT, NULL, "this CIN belongs to a device already", f);
            err = OT_OK;
            goto done;
        }
        OT_TRY(err);
    }
    d.principal_id = pid;
    snprintf(d.imei, sizeof(d.imei), "%s", at.imei);
    snprintf(d.imsi, sizeof(d.imsi), "%s", at.imsi);
    snprintf(d.msisdn, sizeof(d.msisdn), "%s", msisdn);
    snprintf(res, sizeof(res), "%s/devices/%lld", m->prefix, (long long)d.id);
    OT_TRY(svc_audit(m->kit, c, req, "mno.device.enrol", res, "ok"));
    o = mno_device_json(&d);
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(mno_known_cins_json(m, c, d.id, o));
    (void)svc_tx_commit(&c, req, resp, 201, o);
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

static ot_err mno_device_by(struct mno *m, struct db_conn *c, const char *col, const char *val,
                            int64_t id, struct mno_device *d)
{
    struct db_stmt *st = NULL;
    bool row = false;
    char sql[256];
    ot_err err = OT_OK;

    /* col is one of our literals, never input. */
    snprintf(sql, sizeof(sql),
             "SELECT " MNO_COLS " FROM mno_devices WHERE instance = $1 AND %s = $2", col);
    OT_TRY(db_prepare(c, sql, &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    if (val != NULL) {
        OT_TRY(db_bind_text(st, 2, val));
    } else {
        OT_TRY(db_bind_int64(st, 2, id));
    }
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(mno_device_row(st, d));
out:
    db_reset(st);
    return err;
}

void mno_h_device_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct mno *m = ctx;
    struct db_conn *c = NULL;
    struct mno_device d;
    int64_t id = 0;
    json_t *o = NULL;
    ot_err err = OT_OK;

    if (!svc_id_of_path(req, resp, "id", &id)) {
        return;
    }
    OT_TRY(db_acquire(m->db, &c));
    OT_TRY(mno_device_by(m, c, "id", NULL, id, &d));
    o = mno_device_json(&d);
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(mno_known_cins_json(m, c, d.id, o));
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    db_release(c);
    json_free(o);
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such device" : NULL, NULL);
    }
}

ot_err mno_list_bind_instance(struct db_stmt *st, void *ctx)
{
    const struct mno *m = ctx;

    return db_bind_text(st, 3, m->instance);
}

static ot_err mno_device_list_row(struct db_stmt *st, void *ctx, json_t **item)
{
    struct mno_device d;
    ot_err err;

    (void)ctx;
    err = mno_device_row(st, &d);
    if (err != OT_OK) {
        return err;
    }
    *item = mno_device_json(&d);
    return *item != NULL ? OT_OK : OT_E_NOMEM;
}

void mno_h_device_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct mno *m = ctx;
    const struct svc_list l = {
        .sql = "SELECT " MNO_COLS " FROM mno_devices WHERE id > $1 AND instance = $3"
               " ORDER BY id LIMIT $2",
        .bind = mno_list_bind_instance,
        .row = mno_device_list_row,
        .ctx = m,
    };

    svc_list_page(m->db, req, resp, &l);
}

/* GET /status?msisdn=|imsi=|imei= (exactly one): seed 000's "current status
 * information" of the device. */
void mno_h_status(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const keys[] = {"msisdn", "imsi", "imei"};
    struct mno *m = ctx;
    struct db_conn *c = NULL;
    struct mno_device d;
    const char *key = NULL;
    const char *val = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;

    for (size_t i = 0; i < 3; i++) {
        const char *v = net_req_query(req, keys[i]);
        if (v == NULL) {
            continue;
        }
        if (key != NULL) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "give exactly one of msisdn, imsi, imei",
                           keys[i]);
            return;
        }
        if (!mno_digits_ok(v, 5, MNO_DIGITS_MAX)) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "5 to 15 digits", keys[i]);
            return;
        }
        key = keys[i];
        val = v;
    }
    if (key == NULL) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "give exactly one of msisdn, imsi, imei", NULL);
        return;
    }
    OT_TRY(db_acquire(m->db, &c));
    OT_TRY(mno_device_by(m, c, key, val, 0, &d));
    o = json_obj_new();
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    {
        char id[24];
        snprintf(id, sizeof(id), "%lld", (long long)d.id);
        OT_TRY(json_put_str(o, "device", id));
    }
    OT_TRY(json_put_str(o, "msisdn", d.msisdn));
    OT_TRY(json_put_str(o, "imsi", d.imsi));
    OT_TRY(json_put_str(o, "imei", d.imei));
    OT_TRY(json_put_str(o, "state", d.online ? "online" : "offline"));
    OT_TRY(json_put_str(o, "location_area", d.la[0] ? d.la : NULL));
    OT_TRY(d.last_seen ? json_put_int(o, "last_seen", d.last_seen) : json_put_null(o, "last_seen"));
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    db_release(c);
    json_free(o);
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such device" : NULL, NULL);
    }
}

/* ---- the device's own calls ---------------------------------------------- */

enum mno_dev_op {
    MNO_OP_REGISTER,
    MNO_OP_HEARTBEAT,
    MNO_OP_LOCATION,
    MNO_OP_DETACH,
};

/* A re-registration of a device still online (the agent reconnected, or
 * registered twice: se-agent's main loop, then its push client): each job it
 * was woken for but has not opened gets its job event again, in place. It
 * stays delivering with a fresh delivery deadline: the same attempt, not a
 * bounce through the queue (that counted a second attempt for one run and
 * sent a second wake after the back-off, which opened an empty session). An
 * open session is left alone (the agent resumes it or reports interrupted). */
static ot_err mno_device_rewake(struct mno *m, struct db_conn *c, int64_t device_id, bool *rewoke)
{
    struct db_stmt *st = NULL;
    int64_t ids[64];
    size_t n = 0;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "SELECT id FROM mno_jobs WHERE instance = $1 AND device_id = $2"
                      " AND state = 'delivering' ORDER BY id LIMIT 64",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, device_id));
    while (n < 64) {
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        OT_TRY(db_col_int64(st, 0, &ids[n]));
        n++;
    }
    db_reset(st);
    st = NULL;
    for (size_t i = 0; i < n; i++) {
        OT_TRY(db_prepare(c,
                          "UPDATE mno_jobs SET deliver_by = $1, updated_at = $2"
                          " WHERE id = $3 AND state = 'delivering'",
                          &st));
        OT_TRY(db_bind_int64(st, 1, mno_now() + m->deliver_timeout_s));
        OT_TRY(db_bind_int64(st, 2, mno_now()));
        OT_TRY(db_bind_int64(st, 3, ids[i]));
        OT_TRY(db_step(st, &row));
        bool moved = db_changes(st) != 1;
        db_reset(st);
        st = NULL;
        if (!moved) {
            OT_TRY(mno_job_wake_event(m, c, ids[i], device_id));
            *rewoke = true;
        }
    }
out:
    db_reset(st);
    return err;
}

/* Jobs of a device that went offline: delivering back to the queue,
 * running ones interrupted (mno_job_interrupt). */
static ot_err mno_device_gone(struct mno *m, struct db_conn *c, int64_t device_id,
                              const char *reason)
{
    struct db_stmt *st = NULL;
    int64_t ids[64];
    bool run[64];
    size_t n = 0;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "SELECT id, state FROM mno_jobs WHERE instance = $1 AND device_id = $2"
                      " AND state IN ('delivering', 'running') LIMIT 64",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, device_id));
    while (n < 64) {
        const char *s = NULL;
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        OT_TRY(db_col_int64(st, 0, &ids[n]));
        OT_TRY(db_col_text(st, 1, &s));
        run[n] = s != NULL && strcmp(s, "running") == 0;
        n++;
    }
    db_reset(st);
    st = NULL;
    for (size_t i = 0; i < n; i++) {
        err = run[i] ? mno_job_interrupt(m, c, ids[i], reason)
                     : mno_job_move(m, c, ids[i], MNO_EV_UNDELIVERED, NULL);
        if (err == OT_E_STATE) {
            err = OT_OK; /* moved meanwhile */
        }
        OT_TRY(err);
    }
out:
    db_reset(st);
    return err;
}

ot_err mno_device_offline(struct mno *m, struct db_conn *c, int64_t device_id, const char *why)
{
    struct db_stmt *st = NULL;
    bool row = false;
    char data[96];
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "UPDATE mno_devices SET online = 0, lease_expires = 0 WHERE id = $1"
                      " AND online = 1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, device_id));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) == 1) {
        db_reset(st);
        st = NULL;
        snprintf(data, sizeof(data), "{\"device\":\"%lld\",\"event\":\"%s\"}", (long long)device_id,
                 why);
        OT_TRY(mno_event_add(m, c, 0, why, data));
    }
    db_reset(st);
    st = NULL;
    OT_TRY(mno_device_gone(m, c, device_id, why));
out:
    db_reset(st);
    return err;
}

static void mno_device_op(struct net_req *req, struct net_resp *resp, struct mno *m,
                          enum mno_dev_op op)
{
    static const char *const allowed_la[] = {"location_area", NULL};
    static const char *const allowed_none[] = {NULL};
    struct json_err jerr;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct mno_device d;
    const char *la = NULL;
    bool row = false;
    bool has_la = false;
    int64_t now = mno_now();
    int64_t pending = 0;
    bool rewoke = false;
    char res[96];
    json_t *doc;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    doc = svc_body_obj(req, resp, op == MNO_OP_DETACH ? allowed_none : allowed_la);
    if (doc == NULL) {
        return;
    }
    if (op != MNO_OP_DETACH) {
        has_la = json_object_get(doc, "location_area") != NULL;
        if ((has_la || op == MNO_OP_LOCATION)
            && json_get_str(doc, "location_area", 1, MNO_LA_MAX, &la, &jerr) != OT_OK) {
            net_resp_json_error(resp, OT_E_FORMAT, &jerr);
            goto done;
        }
        if (la != NULL && !mno_la_ok(la)) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "1 to 32 of A-Z a-z 0-9 . _ : -",
                           "location_area");
            goto done;
        }
    }
    OT_TRY(svc_tx_begin(m->kit, &c));
    err = mno_device_of_caller(m, c, req, &d);
    if (err == OT_E_NOT_FOUND) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "this device is not enrolled here", NULL);
        err = OT_OK;
        goto done;
    }
    OT_TRY(err);
    /* The lease counts, not the flag: a lease run out is offline even before
     * the sweeper wrote it. */
    bool online = d.online && d.lease_expires >= now;
    if ((op == MNO_OP_HEARTBEAT || op == MNO_OP_LOCATION) && !online) {
        net_resp_error(resp, OT_E_CONFLICT, "not_registered",
                       "the device is offline: register first", NULL);
        goto done;
    }
    if (op == MNO_OP_DETACH) {
        OT_TRY(mno_device_offline(m, c, d.id, "detach"));
    } else {
        OT_TRY(db_prepare(c,
                          "UPDATE mno_devices SET online = 1, last_seen = $1, lease_expires = $2,"
                          " location_area = COALESCE($3, location_area) WHERE id = $4",
                          &st));
        OT_TRY(db_bind_int64(st, 1, now));
        OT_TRY(db_bind_int64(st, 2, now + m->lease_s));
        OT_TRY(db_bind_text(st, 3, la));
        OT_TRY(db_bind_int64(st, 4, d.id));
        OT_TRY(db_step(st, &row));
        db_reset(st);
        st = NULL;
        if (la != NULL) {
            snprintf(d.la, sizeof(d.la), "%s", la);
        }
    }
    if (op == MNO_OP_REGISTER) {
        char data[128];
        if (d.online && d.lease_expires >= now) {
            /* A re-registration without a detach: a wake-up it may have
             * missed is sent again, at no attempt's cost. */
            OT_TRY(mno_device_rewake(m, c, d.id, &rewoke));
        }
        snprintf(data, sizeof(data), "{\"device\":\"%lld\",\"event\":\"registration\"}",
                 (long long)d.id);
        OT_TRY(mno_event_add(m, c, 0, "registration", data));
        OT_TRY(db_prepare(c,
                          "SELECT COUNT(*) FROM mno_jobs WHERE instance = $1 AND device_id = $2"
                          " AND state IN ('queued', 'delivering')",
                          &st));
        OT_TRY(db_bind_text(st, 1, m->instance));
        OT_TRY(db_bind_int64(st, 2, d.id));
        OT_TRY(db_step(st, &row));
        OT_TRY(db_col_int64(st, 0, &pending));
        db_reset(st);
        st = NULL;
        /* Wake-ups for the queue at once (the sweeper would within sweep_ms). */
        OT_TRY(
            db_prepare(c,
                       "UPDATE mno_jobs SET not_before = 0 WHERE instance = $1 AND device_id = $2"
                       " AND state = 'queued'",
                       &st));
        OT_TRY(db_bind_text(st, 1, m->instance));
        OT_TRY(db_bind_int64(st, 2, d.id));
        OT_TRY(db_step(st, &row));
        db_reset(st);
        st = NULL;
    }
    if (op == MNO_OP_REGISTER || op == MNO_OP_DETACH) {
        snprintf(res, sizeof(res), "%s/devices/%lld", m->prefix, (long long)d.id);
        OT_TRY(svc_audit(m->kit, c, req,
                         op == MNO_OP_REGISTER ? "mno.device.register" : "mno.device.detach", res,
                         "ok"));
    }
    o = json_obj_new();
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (op == MNO_OP_REGISTER) {
        char id[24];
        char stream[SVC_PREFIX_MAX + 32];
        snprintf(id, sizeof(id), "%lld", (long long)d.id);
        snprintf(stream, sizeof(stream), "%s/device/stream", m->prefix);
        OT_TRY(json_put_str(o, "device", id));
        OT_TRY(json_put_str(o, "state", "online"));
        OT_TRY(json_put_int(o, "heartbeat_s", m->heartbeat_s));
        OT_TRY(json_put_int(o, "lease_s", m->lease_s));
        OT_TRY(json_put_str(o, "stream", stream));
        OT_TRY(json_put_int(o, "pending_jobs", pending));
    } else if (op == MNO_OP_DETACH) {
        OT_TRY(json_put_str(o, "state", "offline"));
    } else {
        OT_TRY(json_put_str(o, "state", "online"));
        OT_TRY(json_put_int(o, "lease_s", m->lease_s));
        if (op == MNO_OP_LOCATION) {
            OT_TRY(json_put_str(o, "location_area", d.la));
        }
    }
    (void)svc_tx_commit(&c, req, resp, 200, o);
    o = NULL;
    if (rewoke) {
        mno_push_kick(m, d.id); /* its stream may be open still, on any node */
    }
    if (op == MNO_OP_REGISTER) {
        mno_sweep_kick_dev(m, d.id);
    }
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

void mno_h_register(struct net_req *req, struct net_resp *resp, void *ctx)
{
    mno_device_op(req, resp, ctx, MNO_OP_REGISTER);
}

void mno_h_heartbeat(struct net_req *req, struct net_resp *resp, void *ctx)
{
    mno_device_op(req, resp, ctx, MNO_OP_HEARTBEAT);
}

void mno_h_location(struct net_req *req, struct net_resp *resp, void *ctx)
{
    mno_device_op(req, resp, ctx, MNO_OP_LOCATION);
}

void mno_h_detach(struct net_req *req, struct net_resp *resp, void *ctx)
{
    mno_device_op(req, resp, ctx, MNO_OP_DETACH);
}

/* GET /device: what the platform knows about the calling device. */
void mno_h_self(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct mno *m = ctx;
    struct db_conn *c = NULL;
    struct mno_device d;
    json_t *o = NULL;
    ot_err err = OT_OK;

    OT_TRY(db_acquire(m->db, &c));
    OT_TRY(mno_device_of_caller(m, c, req, &d));
    if (d.online && d.lease_expires < mno_now()) {
        d.online = false;
    }
    o = mno_device_json(&d);
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(mno_known_cins_json(m, c, d.id, o));
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    db_release(c);
    json_free(o);
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL,
                       err == OT_E_NOT_FOUND ? "this device is not enrolled here" : NULL, NULL);
    }
}

/* ---- the SE list mirror (seed 001) -------------------------------------- */

static ot_err mno_se_parse(const json_t *it, const char *scope, struct mno_se *se,
                           struct json_err *jerr)
{
    static const char *const allowed[] = {"cin",       "reader",      "iin", "cplc",
                                          "card_data", "verified_at", NULL};
    ot_err err;

    memset(se, 0, sizeof(*se));
    json_err_scope(jerr, "%s", scope);
    if (!json_is_obj(it)) {
        return json_err_set(jerr, OT_E_FORMAT, "", "must be an object");
    }
    se->cin_n = sizeof(se->cin);
    se->iin_n = sizeof(se->iin);
    se->cplc_n = sizeof(se->cplc);
    se->card_data_n = sizeof(se->card_data);
    err = json_check_fields(it, allowed, NULL, jerr);
    if (err == OT_OK) {
        err = json_get_hex(it, "cin", 1, MNO_CIN_MAX, se->cin, &se->cin_n, jerr);
    }
    if (err == OT_OK) {
        err = json_get_str(it, "reader", 1, MNO_READER_MAX, &se->reader, jerr);
    }
    if (err == OT_OK && !mno_reader_ok(se->reader)) {
        err = json_err_set(jerr, OT_E_FORMAT, "reader", "1 to 32 of A-Z a-z 0-9 . _ -");
    }
    if (err == OT_OK && json_is_null(json_object_get(it, "iin"))) {
        se->iin_n = 0;
    } else if (err == OT_OK) {
        err = json_opt_hex(it, "iin", 1, MNO_CIN_MAX, se->iin, &se->iin_n, &se->has_iin, jerr);
    }
    if (err == OT_OK && json_is_null(json_object_get(it, "cplc"))) {
        se->cplc_n = 0;
    } else if (err == OT_OK) {
        err = json_opt_hex(it, "cplc", 1, sizeof(se->cplc), se->cplc, &se->cplc_n, &se->has_cplc,
                           jerr);
    }
    if (err == OT_OK && json_is_null(json_object_get(it, "card_data"))) {
        se->card_data_n = 0;
    } else if (err == OT_OK) {
        err = json_opt_hex(it, "card_data", 1, sizeof(se->card_data), se->card_data,
                           &se->card_data_n, &se->has_card_data, jerr);
    }
    if (err == OT_OK) {
        err = json_get_int(it, "verified_at", 0, INT64_MAX, &se->verified_at, jerr);
    }
    json_err_scope(jerr, "%s", "");
    return err;
}

/* The SE objects of member key (0..MNO_SES_MAX, no CIN or reader twice);
 * answers 400 itself and returns false on bad input. *out: calloc'd. */
bool mno_ses_parse(const json_t *doc, const char *key, struct net_resp *resp, struct mno_se **out,
                   size_t *n)
{
    struct json_err jerr;
    const json_t *items = NULL;
    struct mno_se *ses;

    memset(&jerr, 0, sizeof(jerr));
    *out = NULL;
    *n = 0;
    if (json_get_array(doc, key, 0, MNO_SES_MAX, &items, n, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        return false;
    }
    ses = calloc(*n ? *n : 1, sizeof(*ses));
    if (ses == NULL) {
        svc_fail(resp, OT_E_NOMEM);
        return false;
    }
    for (size_t i = 0; i < *n; i++) {
        char f[48];
        snprintf(f, sizeof(f), "%s[%zu]", key, i);
        if (mno_se_parse(json_at(items, i), f, &ses[i], &jerr) != OT_OK) {
            net_resp_json_error(resp, OT_E_FORMAT, &jerr);
            free(ses);
            return false;
        }
        for (size_t j = 0; j < i; j++) {
            if ((ses[j].cin_n == ses[i].cin_n && memcmp(ses[j].cin, ses[i].cin, ses[i].cin_n) == 0)
                || strcmp(ses[j].reader, ses[i].reader) == 0) {
                net_resp_error(resp, OT_E_FORMAT, NULL, "a CIN or reader is listed twice", f);
                free(ses);
                return false;
            }
        }
    }
    *out = ses;
    return true;
}

/* Replaces the device's mirrored SE list on c. OT_E_FORMAT with *bad = the
 * index of an SE whose CIN is not known for the device (nothing written). */
ot_err mno_ses_store(struct mno *m, struct db_conn *c, int64_t device_id, const struct mno_se *ses,
                     size_t n, size_t *bad)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    for (size_t i = 0; i < n; i++) {
        OT_TRY(db_prepare(c,
                          "SELECT 1 FROM mno_known_cins WHERE instance = $1 AND device_id = $2"
                          " AND cin = $3",
                          &st));
        OT_TRY(db_bind_text(st, 1, m->instance));
        OT_TRY(db_bind_int64(st, 2, device_id));
        OT_TRY(db_bind_blob(st, 3, ses[i].cin, ses[i].cin_n));
        OT_TRY(db_step(st, &row));
        db_reset(st);
        st = NULL;
        if (!row) {
            *bad = i;
            OT_FAIL(OT_E_FORMAT);
        }
    }
    OT_TRY(db_prepare(c, "DELETE FROM mno_ses WHERE instance = $1 AND device_id = $2", &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, device_id));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    for (size_t i = 0; i < n; i++) {
        OT_TRY(db_prepare(c,
                          "INSERT INTO mno_ses (instance, device_id, cin, reader, iin, cplc,"
                          " card_data, verified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                          &st));
        OT_TRY(db_bind_text(st, 1, m->instance));
        OT_TRY(db_bind_int64(st, 2, device_id));
        OT_TRY(db_bind_blob(st, 3, ses[i].cin, ses[i].cin_n));
        OT_TRY(db_bind_text(st, 4, ses[i].reader));
        OT_TRY(ses[i].iin_n ? db_bind_blob(st, 5, ses[i].iin, ses[i].iin_n) : db_bind_null(st, 5));
        OT_TRY(ses[i].cplc_n ? db_bind_blob(st, 6, ses[i].cplc, ses[i].cplc_n)
                             : db_bind_null(st, 6));
        OT_TRY(ses[i].card_data_n ? db_bind_blob(st, 7, ses[i].card_data, ses[i].card_data_n)
                                  : db_bind_null(st, 7));
        OT_TRY(db_bind_int64(st, 8, ses[i].verified_at));
        OT_TRY(db_step(st, &row));
        db_reset(st);
        st = NULL;
    }
out:
    db_reset(st);
    return err;
}

/* PUT /device/secure-elements {"items":[SE...]}: the agent's SE list. */
void mno_h_ses_put(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"items", NULL};
    struct mno *m = ctx;
    struct db_conn *c = NULL;
    struct mno_device d;
    struct mno_se *ses = NULL;
    size_t n = 0;
    size_t bad = 0;
    char res[96];
    json_t *doc;
    json_t *o = NULL;
    ot_err err = OT_OK;

    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (!mno_ses_parse(doc, "items", resp, &ses, &n)) {
        goto done;
    }
    OT_TRY(svc_tx_begin(m->kit, &c));
    err = mno_device_of_caller(m, c, req, &d);
    if (err == OT_E_NOT_FOUND) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "this device is not enrolled here", NULL);
        err = OT_OK;
        goto done;
    }
    OT_TRY(err);
    err = mno_ses_store(m, c, d.id, ses, n, &bad);
    if (err == OT_E_FORMAT) {
        char f[32];
        snprintf(f, sizeof(f), "items[%zu].cin", bad);
        net_resp_error(resp, OT_E_FORMAT, NULL, "this CIN is not known for this device", f);
        err = OT_OK;
        goto done;
    }
    OT_TRY(err);
    snprintf(res, sizeof(res), "%s/devices/%lld/secure-elements", m->prefix, (long long)d.id);
    OT_TRY(svc_audit(m->kit, c, req, "mno.device.ses", res, "ok"));
    o = json_obj_new();
    if (o == NULL || json_put_int(o, "count", (int64_t)n) != OT_OK) {
        OT_FAIL(OT_E_NOMEM);
    }
    (void)svc_tx_commit(&c, req, resp, 200, o);
    o = NULL;
out:
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    free(ses);
    json_free(o);
    svc_tx_abort(&c);
    json_free(doc);
}

ot_err mno_put_blob_hex(struct db_stmt *st, int col, json_t *o, const char *key)
{
    const uint8_t *p = NULL;
    size_t n = 0;
    ot_err err = db_col_blob(st, col, &p, &n);

    if (err != OT_OK) {
        return err;
    }
    return p == NULL ? json_put_null(o, key) : json_put_hex(o, key, p, n);
}

/* GET /devices/{id}/secure-elements: the mirror of the device's SE list. */
void mno_h_ses_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct mno *m = ctx;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct mno_device d;
    json_t *arr = NULL;
    int64_t id = 0;
    bool row = false;
    ot_err err = OT_OK;

    if (!svc_id_of_path(req, resp, "id", &id)) {
        return;
    }
    arr = json_arr_new();
    if (arr == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(db_acquire(m->db, &c));
    OT_TRY(mno_device_by(m, c, "id", NULL, id, &d));
    OT_TRY(db_prepare(c,
                      "SELECT cin, reader, iin, cplc, card_data, verified_at FROM mno_ses"
                      " WHERE instance = $1 AND device_id = $2 ORDER BY reader",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, d.id));
    for (;;) {
        const char *reader = NULL;
        int64_t v = 0;
        json_t *o;
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        o = json_obj_new();
        if (o == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        OT_TRY(json_push(arr, o));
        OT_TRY(mno_put_blob_hex(st, 0, o, "cin"));
        OT_TRY(db_col_text(st, 1, &reader));
        OT_TRY(json_put_str(o, "reader", reader));
        OT_TRY(mno_put_blob_hex(st, 2, o, "iin"));
        OT_TRY(mno_put_blob_hex(st, 3, o, "cplc"));
        OT_TRY(mno_put_blob_hex(st, 4, o, "card_data"));
        OT_TRY(db_col_int64(st, 5, &v));
        OT_TRY(json_put_int(o, "verified_at", v));
    }
    db_reset(st);
    st = NULL;
    db_release(c);
    c = NULL;
    (void)svc_send_list(resp, &arr, 0);
out:
    db_reset(st);
    db_release(c);
    json_free(arr);
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such device" : NULL, NULL);
    }
}

/* GET /events?cursor=&limit=: the platform events (registration, detach,
 * lease expiry, alerts) for other services, oldest first. */
static const struct svc_col mno_event_cols[] = {
    {"id", SVC_COL_INT, 0},
    {"event", SVC_COL_TEXT, 0},
    {"data", SVC_COL_JSON, 0},
    {"at", SVC_COL_INT, 0},
};

void mno_h_events(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct mno *m = ctx;
    const struct svc_list l = {
        .sql = "SELECT id, kind, data, created_at FROM mno_events WHERE id > $1"
               " AND instance = $3 AND device_id = 0 ORDER BY id LIMIT $2",
        .bind = mno_list_bind_instance,
        .cols = mno_event_cols,
        .ncols = SVC_NCOLS(mno_event_cols),
        .ctx = m,
    };

    svc_list_page(m->db, req, resp, &l);
}
