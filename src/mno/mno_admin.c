/* mno admin sessions: the device side of RAM over HTTP (docs/ota.md §5-6).
 * Every POST is one transaction: a malformed message is refused before
 * anything is written, and a repeated POST (X-Admin-Resume) gets the answer
 * the first one got. */
#define OT_LOG_COMPONENT "mno"
#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "db/audit.h"
#include "db/db.h"
#include "mno/mno_msg.h"
#include "mno/mno_priv.h"
#include "mno/mno_script.h"
#include "svc/kit.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void mno_admin_err(struct net_resp *resp, ot_err e, const char *code, const char *msg,
                          const char *field)
{
    net_resp_error(resp, e, code, msg, field);
    net_resp_header(resp, "X-Admin-Protocol", MNO_PROTO);
}

/* The headers every admin POST carries (docs/ota.md §9), mno_msg.h's rules. */
static bool mno_req_msg(struct net_req *req, struct net_resp *resp, bool first, struct mno_msg *msg)
{
    struct mno_msg_in in;
    struct mno_msg_err e;

    in.proto = net_req_header(req, "X-Admin-Protocol");
    in.from = net_req_header(req, "X-Admin-From");
    in.status = net_req_header(req, "X-Admin-Script-Status");
    in.resume = net_req_header(req, "X-Admin-Resume");
    in.ct = net_req_header(req, "Content-Type");
    in.body = net_req_body(req, &in.body_n);
    if (!mno_msg_parse(&in, first, msg, &e)) {
        mno_admin_err(resp, OT_E_FORMAT, e.code, e.msg, e.field);
        return false;
    }
    return true;
}

struct mno_ajob {
    int64_t id;
    int64_t device_id;
    uint8_t cin[MNO_CIN_MAX];
    size_t cin_n; /* 0: named by reader only */
    char reader[MNO_READER_MAX + 1];
    uint8_t aid[16];
    size_t aid_n;
    bool interactive;
    bool closed;
    enum mno_job_state state;
    int64_t session_no; /* one more at each open of its session */
};

static ot_err mno_ajob_load(struct mno *m, struct db_conn *c, int64_t id, int64_t device_id,
                            struct mno_ajob *j)
{
    struct db_stmt *st = NULL;
    bool row = false;
    const uint8_t *p = NULL;
    size_t n = 0;
    const char *t = NULL;
    int64_t v = 0;
    ot_err err = OT_OK;

    memset(j, 0, sizeof(*j));
    OT_TRY(db_prepare(c,
                      "SELECT device_id, se_cin, se_reader, aid, interactive, state, closed,"
                      " session_no, instance FROM mno_jobs WHERE id = $1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (!row || !mno_row_instance(m, st, 8)) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_int64(st, 0, &j->device_id));
    if (j->device_id != device_id) {
        OT_FAIL(OT_E_NOT_FOUND); /* another device's job is not there */
    }
    j->id = id;
    OT_TRY(db_col_blob(st, 1, &p, &n));
    if (p != NULL && n <= sizeof(j->cin)) {
        memcpy(j->cin, p, n);
        j->cin_n = n;
    }
    OT_TRY(db_col_text(st, 2, &t));
    snprintf(j->reader, sizeof(j->reader), "%s", t != NULL ? t : "");
    OT_TRY(db_col_blob(st, 3, &p, &n));
    if (n > sizeof(j->aid)) {
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(j->aid, p, n);
    j->aid_n = n;
    OT_TRY(db_col_int64(st, 4, &v));
    j->interactive = v != 0;
    OT_TRY(db_col_text(st, 5, &t));
    OT_TRY(mno_job_state_parse(t, &j->state));
    OT_TRY(db_col_int64(st, 6, &v));
    j->closed = v != 0;
    OT_TRY(db_col_int64(st, 7, &j->session_no));
out:
    db_reset(st);
    return err;
}

/* The SE the agent says it opened must be the job's: by CIN, or the CIN of
 * the job's reader on the device's mirrored list, or (reader not mirrored)
 * one of the CINs known for the device. Fixes the job's CIN. */
static ot_err mno_ajob_se_check(struct mno *m, struct db_conn *c, struct mno_ajob *j,
                                const struct mno_msg *msg, bool *ok)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    *ok = false;
    if (j->cin_n > 0) {
        *ok = j->cin_n == msg->cin_n && memcmp(j->cin, msg->cin, msg->cin_n) == 0;
        return OT_OK;
    }
    OT_TRY(db_prepare(c,
                      "SELECT 1 FROM mno_ses WHERE instance = $1 AND device_id = $2"
                      " AND reader = $3 AND cin = $4",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, j->device_id));
    OT_TRY(db_bind_text(st, 3, j->reader));
    OT_TRY(db_bind_blob(st, 4, msg->cin, msg->cin_n));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    if (!row) {
        OT_TRY(db_prepare(c,
                          "SELECT 1 FROM mno_known_cins WHERE instance = $1 AND device_id = $2"
                          " AND cin = $3 AND NOT EXISTS (SELECT 1 FROM mno_ses WHERE instance"
                          " = $1 AND device_id = $2 AND reader = $4)",
                          &st));
        OT_TRY(db_bind_text(st, 1, m->instance));
        OT_TRY(db_bind_int64(st, 2, j->device_id));
        OT_TRY(db_bind_blob(st, 3, msg->cin, msg->cin_n));
        OT_TRY(db_bind_text(st, 4, j->reader));
        OT_TRY(db_step(st, &row));
        db_reset(st);
        st = NULL;
    }
    if (row) {
        OT_TRY(db_prepare(c, "UPDATE mno_jobs SET se_cin = $1 WHERE id = $2", &st));
        OT_TRY(db_bind_blob(st, 1, msg->cin, msg->cin_n));
        OT_TRY(db_bind_int64(st, 2, j->id));
        OT_TRY(db_step(st, &row));
        memcpy(j->cin, msg->cin, msg->cin_n);
        j->cin_n = msg->cin_n;
        *ok = true;
    }
out:
    db_reset(st);
    return err;
}

struct mno_sc {
    int64_t seq;
    uint8_t *cmd;
    size_t cmd_n;
    uint8_t *rsp; /* NULL: no responses yet */
    size_t rsp_n;
};

static void mno_sc_free(struct mno_sc *s)
{
    free(s->cmd);
    free(s->rsp);
    memset(s, 0, sizeof(*s));
}

static ot_err mno_dup(const uint8_t *p, size_t n, uint8_t **out)
{
    *out = malloc(n ? n : 1);
    if (*out == NULL) {
        return OT_E_NOMEM;
    }
    if (n) {
        memcpy(*out, p, n);
    }
    return OT_OK;
}

/* Script seq of the job; OT_E_NOT_FOUND when there is none. */
static ot_err mno_sc_load(struct db_conn *c, int64_t job_id, int64_t seq, struct mno_sc *s)
{
    struct db_stmt *st = NULL;
    bool row = false;
    const uint8_t *p = NULL;
    size_t n = 0;
    ot_err err = OT_OK;

    memset(s, 0, sizeof(*s));
    OT_TRY(db_prepare(c, "SELECT cmd, rsp FROM mno_scripts WHERE job_id = $1 AND seq = $2", &st));
    OT_TRY(db_bind_int64(st, 1, job_id));
    OT_TRY(db_bind_int64(st, 2, seq));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    s->seq = seq;
    OT_TRY(db_col_blob(st, 0, &p, &n));
    OT_TRY(mno_dup(p, n, &s->cmd));
    s->cmd_n = n;
    OT_TRY(db_col_blob(st, 1, &p, &n));
    if (p != NULL) {
        OT_TRY(mno_dup(p, n, &s->rsp));
        s->rsp_n = n;
    }
out:
    db_reset(st);
    if (err != OT_OK) {
        mno_sc_free(s);
    }
    return err;
}

static void mno_send_script(struct mno *m, struct net_resp *resp, const struct mno_ajob *j,
                            const struct mno_sc *s, bool first)
{
    char uri[SVC_PREFIX_MAX + 64];
    char app[64];
    char aid[40];

    snprintf(uri, sizeof(uri), "%s/admin/jobs/%lld/scripts/%lld", m->prefix, (long long)j->id,
             (long long)s->seq);
    net_resp_bytes(resp, 200, MNO_CT_CMD, s->cmd, s->cmd_n);
    net_resp_header(resp, "X-Admin-Protocol", MNO_PROTO);
    net_resp_header(resp, "X-Admin-Next-URI", uri);
    if (first && hex_encode(j->aid, j->aid_n, aid, sizeof(aid)) == OT_OK && j->aid_n >= 5) {
        snprintf(app, sizeof(app), "//aid/%.10s/%s", aid, aid + 10);
        net_resp_header(resp, "X-Admin-Targeted-Application", app);
    }
}

static void mno_send_wait(struct mno *m, struct net_resp *resp, int64_t job_id, int64_t seq)
{
    char uri[SVC_PREFIX_MAX + 64];
    char ra[24];

    if (seq == 0) {
        snprintf(uri, sizeof(uri), "%s/admin/jobs/%lld", m->prefix, (long long)job_id);
    } else {
        snprintf(uri, sizeof(uri), "%s/admin/jobs/%lld/scripts/%lld", m->prefix, (long long)job_id,
                 (long long)seq);
    }
    {
        /* Well within the session's timeout: the POST after the wait is
         * what keeps the session open. */
        int64_t w = m->heartbeat_s < 30 ? m->heartbeat_s : 30;
        if (w > m->session_timeout_s / 3) {
            w = m->session_timeout_s / 3 > 0 ? m->session_timeout_s / 3 : 1;
        }
        snprintf(ra, sizeof(ra), "%lld", (long long)w);
    }
    net_resp_bytes(resp, 202, NULL, NULL, 0);
    net_resp_header(resp, "X-Admin-Protocol", MNO_PROTO);
    net_resp_header(resp, "X-Admin-Next-URI", uri);
    net_resp_header(resp, "Retry-After", ra);
}

static void mno_send_end(struct net_resp *resp)
{
    net_resp_bytes(resp, 204, NULL, NULL, 0);
    net_resp_header(resp, "X-Admin-Protocol", MNO_PROTO);
}

/* Counts EXTERNAL AUTHENTICATE outcomes of one answered script per SE and
 * key version (the version from the INITIALIZE UPDATE answer before it);
 * raises an alert at the limit. *blocked: the SE's jobs stop now. */
static ot_err mno_auth_account(struct mno *m, struct db_conn *c, struct net_req *req,
                               const struct mno_ajob *j, const struct mno_script *cmd,
                               const struct mno_script *rsp, bool *blocked)
{
    struct db_stmt *st = NULL;
    int64_t kvn = 0;
    bool row = false;
    ot_err err = OT_OK;

    *blocked = false;
    for (size_t i = 0; i < rsp->n; i++) {
        const uint8_t *a = cmd->items[i].p;
        const uint8_t *r = rsp->items[i].p;
        size_t rn = rsp->items[i].n;
        uint16_t sw = (uint16_t)((r[rn - 2] << 8) | r[rn - 1]);
        int64_t failures = 0;

        if ((a[0] & 0x80u) && a[1] == 0x50u && sw == 0x9000u && rn >= 13) {
            kvn = r[10];
            continue;
        }
        if (!((a[0] & 0x80u) && a[1] == 0x82u)) {
            continue;
        }
        if (sw == 0x9000u) {
            OT_TRY(db_prepare(c,
                              "DELETE FROM mno_auth_failures WHERE instance = $1 AND cin = $2"
                              " AND kvn = $3",
                              &st));
        } else {
            atomic_fetch_add(&m->m_auth_failures, 1);
            OT_TRY(db_prepare(c,
                              "INSERT INTO mno_auth_failures (instance, cin, kvn, failures,"
                              " updated_at) VALUES ($1, $2, $3, 1, $4) ON CONFLICT (instance,"
                              " cin, kvn) DO UPDATE SET failures = mno_auth_failures.failures + 1,"
                              " updated_at = excluded.updated_at RETURNING failures",
                              &st));
            OT_TRY(db_bind_int64(st, 4, mno_now()));
        }
        OT_TRY(db_bind_text(st, 1, m->instance));
        OT_TRY(db_bind_blob(st, 2, j->cin, j->cin_n));
        OT_TRY(db_bind_int64(st, 3, kvn));
        OT_TRY(db_step(st, &row));
        if (row && sw != 0x9000u) {
            OT_TRY(db_col_int64(st, 0, &failures));
        }
        db_reset(st);
        st = NULL;
        if (failures >= m->auth_fail_limit) {
            char res[SVC_PREFIX_MAX + 96];
            char hex[MNO_CIN_MAX * 2 + 1];
            char data[200];
            bool open_alert = false;
            OT_TRY(hex_encode(j->cin, j->cin_n, hex, sizeof(hex)));
            OT_TRY(db_prepare(c,
                              "SELECT 1 FROM mno_alerts WHERE instance = $1 AND cin = $2"
                              " AND cleared = 0",
                              &st));
            OT_TRY(db_bind_text(st, 1, m->instance));
            OT_TRY(db_bind_blob(st, 2, j->cin, j->cin_n));
            OT_TRY(db_step(st, &open_alert));
            db_reset(st);
            st = NULL;
            *blocked = true;
            if (open_alert) {
                continue;
            }
            OT_TRY(db_prepare(c,
                              "INSERT INTO mno_alerts (instance, cin, kvn, failures, created_at)"
                              " VALUES ($1, $2, $3, $4, $5)",
                              &st));
            OT_TRY(db_bind_text(st, 1, m->instance));
            OT_TRY(db_bind_blob(st, 2, j->cin, j->cin_n));
            OT_TRY(db_bind_int64(st, 3, kvn));
            OT_TRY(db_bind_int64(st, 4, failures));
            OT_TRY(db_bind_int64(st, 5, mno_now()));
            OT_TRY(db_step(st, &row));
            db_reset(st);
            st = NULL;
            atomic_fetch_add(&m->m_alerts, 1);
            snprintf(res, sizeof(res), "%s/secure-elements/%s/keys/%lld", m->prefix, hex,
                     (long long)kvn);
            OT_TRY(svc_audit(m->kit, c, req, "mno.se.auth_blocked", res, "alert"));
            snprintf(data, sizeof(data), "{\"cin\":\"%s\",\"kvn\":%lld,\"failures\":%lld}", hex,
                     (long long)kvn, (long long)failures);
            OT_TRY(mno_event_add(m, c, 0, "alert", data));
            OT_LOG_WARN("SE %s key version %lld: %lld failed EXTERNAL AUTHENTICATEs, jobs stopped",
                        hex, (long long)kvn, (long long)failures);
        }
    }
    if (*blocked) {
        /* The SE's other waiting jobs stop too. */
        OT_TRY(db_prepare(c,
                          "UPDATE mno_jobs SET state = 'failed', reason = 'se_blocked',"
                          " updated_at = $1 WHERE instance = $2 AND se_cin = $3 AND state IN"
                          " ('queued', 'delivering') AND id <> $4",
                          &st));
        OT_TRY(db_bind_int64(st, 1, mno_now()));
        OT_TRY(db_bind_text(st, 2, m->instance));
        OT_TRY(db_bind_blob(st, 3, j->cin, j->cin_n));
        OT_TRY(db_bind_int64(st, 4, j->id));
        OT_TRY(db_step(st, &row));
    }
out:
    db_reset(st);
    return err;
}

static bool mno_blocked(struct mno *m, struct db_conn *c, const struct mno_ajob *j, ot_err *err)
{
    struct db_stmt *st = NULL;
    bool row = false;

    *err = db_prepare(
        c, "SELECT 1 FROM mno_alerts WHERE instance = $1 AND cin = $2 AND cleared = 0", &st);
    if (*err == OT_OK) {
        *err = db_bind_text(st, 1, m->instance);
    }
    if (*err == OT_OK) {
        *err = db_bind_blob(st, 2, j->cin, j->cin_n);
    }
    if (*err == OT_OK) {
        *err = db_step(st, &row);
    }
    db_reset(st);
    return row;
}

static ot_err mno_job_stop(struct db_conn *c, int64_t job_id, size_t index, uint16_t sw)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c, "UPDATE mno_jobs SET stop_index = $1, stop_sw = $2 WHERE id = $3", &st));
    OT_TRY(db_bind_int64(st, 1, (int64_t)index));
    OT_TRY(db_bind_int64(st, 2, sw));
    OT_TRY(db_bind_int64(st, 3, job_id));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

static bool mno_admin_begin(struct mno *m, struct net_req *req, struct net_resp *resp,
                            struct db_conn **c, struct mno_device *d, int64_t *job_id)
{
    ot_err err;

    if (!svc_id_of_path(req, resp, "id", job_id)) {
        net_resp_header(resp, "X-Admin-Protocol", MNO_PROTO);
        return false;
    }
    err = svc_tx_begin(m->kit, c);
    if (err == OT_OK) {
        err = mno_device_of_caller(m, *c, req, d);
    }
    if (err != OT_OK) {
        svc_tx_abort(c);
        mno_admin_err(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such job" : NULL, NULL);
        return false;
    }
    return true;
}

/* kick_dev: the device whose change may concern the sweeper (a job ended
 * or a script got its responses: the device's next job, waiting submitters,
 * callbacks), -1 for none (a session that opened concerns none of them). */
static bool mno_admin_commit(struct mno *m, struct db_conn **c, struct net_resp *resp,
                             int64_t kick_dev)
{
    ot_err err = db_commit(*c);

    if (err != OT_OK) {
        db_rollback(*c);
        mno_admin_err(resp, err, NULL, NULL, NULL);
    } else if (kick_dev >= 0) {
        mno_sweep_kick_dev(m, kick_dev);
    }
    db_release(*c);
    *c = NULL;
    return err == OT_OK;
}

/* POST /admin/jobs/{id}: opens (or, with X-Admin-Resume, re-opens) the
 * job's session. */
void mno_h_admin_open(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct mno *m = ctx;
    struct db_conn *c = NULL;
    struct mno_device d;
    struct mno_msg msg;
    struct mno_ajob j;
    struct mno_sc sc;
    int64_t job_id = 0;
    bool se_ok = false;
    bool blocked;
    char res[96];
    ot_err err = OT_OK;

    memset(&sc, 0, sizeof(sc));
    if (!mno_req_msg(req, resp, true, &msg)) {
        return;
    }
    if (!mno_admin_begin(m, req, resp, &c, &d, &job_id)) {
        return;
    }
    err = mno_ajob_load(m, c, job_id, d.id, &j);
    if (err == OT_E_NOT_FOUND) {
        mno_admin_err(resp, err, NULL, "no such job", NULL);
        goto done;
    }
    OT_TRY(err);
    if (strcmp(msg.imei, d.imei) != 0) {
        mno_admin_err(resp, OT_E_FORMAT, NULL, "the IMEI is not this device's", "X-Admin-From");
        goto done;
    }
    if (j.state != MNO_J_QUEUED && j.state != MNO_J_DELIVERING && j.state != MNO_J_RUNNING) {
        mno_send_end(resp);
        goto done;
    }
    OT_TRY(mno_ajob_se_check(m, c, &j, &msg, &se_ok));
    if (!se_ok) {
        mno_admin_err(resp, OT_E_FORMAT, NULL, "the SE is not the job's", "X-Admin-From");
        goto done;
    }
    if (j.state == MNO_J_RUNNING) {
        if (!msg.resume) {
            mno_admin_err(resp, OT_E_CONFLICT, "session_open",
                          "the session is open: resume it with X-Admin-Resume: true", NULL);
            goto done;
        }
        err = mno_sc_load(c, j.id, 1, &sc);
        if (err != OT_OK && err != OT_E_NOT_FOUND) {
            goto out;
        }
        if (err == OT_OK && sc.rsp != NULL) {
            err = OT_OK;
            mno_admin_err(resp, OT_E_STATE, "session_state",
                          "script 1 has its responses: POST to the current script", NULL);
            goto done;
        }
        if (err == OT_E_NOT_FOUND) {
            mno_send_wait(m, resp, j.id, 0);
        } else {
            mno_send_script(m, resp, &j, &sc, true);
        }
        err = OT_OK;
        /* The agent is there: its session's deadline moves on. */
        OT_TRY(mno_session_touch(m, c, j.id));
        mno_admin_commit(m, &c, resp, -1);
        goto done;
    }
    blocked = mno_blocked(m, c, &j, &err);
    OT_TRY(err);
    if (blocked) {
        OT_TRY(mno_job_move(m, c, j.id, MNO_EV_GIVE_UP, "se_blocked"));
        snprintf(res, sizeof(res), "%s/jobs/%lld", m->prefix, (long long)j.id);
        OT_TRY(svc_audit(m->kit, c, req, "mno.job.fail", res, "se_blocked"));
        mno_admin_commit(m, &c, resp, d.id);
        mno_admin_err(resp, OT_E_CONFLICT, "se_blocked",
                      "this SE's jobs are stopped after failed EXTERNAL AUTHENTICATEs", NULL);
        goto done;
    }
    OT_TRY(mno_job_move(m, c, j.id, MNO_EV_OPEN, NULL));
    snprintf(res, sizeof(res), "%s/jobs/%lld", m->prefix, (long long)j.id);
    OT_TRY(svc_audit(m->kit, c, req, "mno.job.open", res, "ok"));
    err = mno_sc_load(c, j.id, 1, &sc);
    if (err == OT_E_NOT_FOUND) {
        err = OT_OK;
        mno_send_wait(m, resp, j.id, 0);
    } else {
        OT_TRY(err);
        mno_send_script(m, resp, &j, &sc, true);
    }
    mno_admin_commit(m, &c, resp, -1);
out:
    if (err != OT_OK) {
        mno_admin_err(resp, err, NULL, NULL, NULL);
    }
done:
    mno_sc_free(&sc);
    svc_tx_abort(&c);
}

/* The answer after script seq has its responses: the next script, a wait,
 * or the end (finishing the job when it is over). */
static ot_err mno_after(struct mno *m, struct db_conn *c, struct net_req *req,
                        struct net_resp *resp, struct mno_ajob *j, int64_t seq, bool *commit,
                        bool *hold)
{
    struct mno_sc next;
    char res[96];
    ot_err err = OT_OK;

    memset(&next, 0, sizeof(next));
    if (j->state != MNO_J_RUNNING) {
        mno_send_end(resp);
        return OT_OK;
    }
    if (j->interactive) {
        err = mno_sc_load(c, j->id, seq + 1, &next);
        if (err == OT_OK) {
            mno_send_script(m, resp, j, &next, false);
            mno_sc_free(&next);
            return OT_OK;
        }
        if (err != OT_E_NOT_FOUND) {
            return err;
        }
        err = OT_OK;
        if (!j->closed) {
            /* 202, unless mno_hold can keep the POST until the next batch. */
            mno_send_wait(m, resp, j->id, seq);
            *hold = true;
            return OT_OK;
        }
    }
    OT_TRY(mno_job_move(m, c, j->id, MNO_EV_FINISH, NULL));
    snprintf(res, sizeof(res), "%s/jobs/%lld", m->prefix, (long long)j->id);
    OT_TRY(svc_audit(m->kit, c, req, "mno.job.done", res, "ok"));
    j->state = MNO_J_DONE;
    *commit = true;
    mno_send_end(resp);
out:
    return err;
}

static ot_err mno_rsp_store(struct db_conn *c, int64_t job_id, int64_t seq, const uint8_t *p,
                            size_t n)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "UPDATE mno_scripts SET rsp = $1, answered_at = $2 WHERE job_id = $3"
                      " AND seq = $4 AND rsp IS NULL",
                      &st));
    OT_TRY(db_bind_blob(st, 1, p, n));
    OT_TRY(db_bind_int64(st, 2, mno_now()));
    OT_TRY(db_bind_int64(st, 3, job_id));
    OT_TRY(db_bind_int64(st, 4, seq));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) != 1) {
        OT_FAIL(OT_E_CONFLICT);
    }
out:
    db_reset(st);
    return err;
}

/* ---- held POSTs (docs/ota.md §6.2): an interactive job's agent waits in
 * its POST of script n's responses for script n+1 (or the close) instead of
 * a 202 and a POST more; the sweeper answers, by MNO_HOLD_S at the latest. */

#define MNO_HOLD_S 10

struct mno_held {
    struct mno_held *next;
    struct net_stream *s;
    int64_t job_id;
    int64_t device_id;
    int64_t seq;
    int64_t session_no; /* the session it belongs to */
    int64_t deadline;
    /* The POST's credential, checked again before any answer once one may
     * have been revoked (auth_gen: the auth store's generation it was last
     * good at): a revoked device gets 401, not its next script. */
    struct mno_cred cred;
    int64_t auth_gen;
    struct audit_entry refusal; /* the audit row of that 401 (the request is gone by then) */
    int cred_now;               /* this pass's mno_held_cred (the sweeper's own) */
    atomic_bool dirty; /* its job may have moved (a batch, a close, a cancel): look at once */
    atomic_bool closed;
    atomic_int refs;
};

static void mno_held_unref(struct mno_held *h)
{
    if (atomic_fetch_sub(&h->refs, 1) == 1) {
        net_stream_release(h->s);
        mno_cred_clear(&h->cred);
        free(h);
    }
}

static void mno_held_closed(void *ctx, struct net_stream *s)
{
    struct mno_held *h = ctx;

    (void)s;
    atomic_store(&h->closed, true);
    mno_held_unref(h);
}

/* Replaces the 202 in resp by a held answer (the 202 stays when it cannot). */
static void mno_hold(struct mno *m, struct net_req *req, struct net_resp *resp,
                     const struct mno_device *d, const struct mno_ajob *j, int64_t seq)
{
    struct mno_held *h = calloc(1, sizeof(*h));

    if (h == NULL) {
        return;
    }
    h->auth_gen = authstore_generation(m->auth);
    svc_audit_entry(req, "mno.admin.held_refused", net_req_path(req), "401 unauthenticated",
                    &h->refusal);
    if (mno_cred_take(m, req, d->principal_id, &h->cred) != OT_OK) {
        /* Revoked meanwhile (or no memory): the 202; its POST again is
         * refused. */
        mno_cred_clear(&h->cred);
        free(h);
        return;
    }
    h->job_id = j->id;
    h->device_id = j->device_id;
    h->seq = seq;
    h->session_no = j->session_no;
    /* Within the session's timeout too (the agent's next POST keeps it). */
    h->deadline = mno_now()
                  + (m->session_timeout_s / 2 < MNO_HOLD_S
                         ? (m->session_timeout_s / 2 > 0 ? m->session_timeout_s / 2 : 1)
                         : MNO_HOLD_S);
    atomic_init(&h->dirty, true);
    atomic_init(&h->closed, false);
    atomic_init(&h->refs, 2);
    /* The sweeper answers by the deadline; the server's timeout is the
     * safety net. */
    h->s = net_resp_defer(resp, (MNO_HOLD_S + 5) * 1000u, 503, mno_held_closed, h);
    if (h->s == NULL) {
        mno_cred_clear(&h->cred);
        free(h);
        return;
    }
    pthread_mutex_lock(&m->mu);
    h->next = m->held;
    m->held = h;
    pthread_mutex_unlock(&m->mu);
    mno_sweep_kick_dev(m, 0); /* the batch may be there already */
}

/* The held POST's answer: 200 script n+1, 202 (wait on), 204 (over). */
static void mno_held_answer(struct mno *m, struct mno_held *h, int status,
                            const struct mno_sc *next)
{
    char uri[SVC_PREFIX_MAX + 96];
    const char *hdrs[4];

    hdrs[0] = "X-Admin-Protocol: " MNO_PROTO;
    hdrs[1] = NULL;
    if (status == 204) {
        (void)net_stream_answer_hdrs(h->s, 204, MNO_CT_CMD, hdrs, NULL, 0);
        return;
    }
    snprintf(uri, sizeof(uri), "X-Admin-Next-URI: %s/admin/jobs/%lld/scripts/%lld", m->prefix,
             (long long)h->job_id, (long long)(status == 200 ? next->seq : h->seq));
    hdrs[1] = uri;
    if (status == 200) {
        hdrs[2] = NULL;
        (void)net_stream_answer_hdrs(h->s, 200, MNO_CT_CMD, hdrs, next->cmd, next->cmd_n);
        return;
    }
    hdrs[2] = "Retry-After: 1";
    hdrs[3] = NULL;
    (void)net_stream_answer_hdrs(h->s, 202, MNO_CT_CMD, hdrs, NULL, 0);
}

/* Whether the held POST's credential is still good: 1 yes; 0 no (a revoked
 * one is answered 401, nothing of the job sent); -1 not known now (the auth
 * store did not answer): not answered this pass, checked again at the next. */
static int mno_held_cred(struct mno *m, struct mno_held *h, int64_t now)
{
    static const char body[] = "{\"error\":{\"code\":\"unauthenticated\",\"message\":"
                               "\"the credential was revoked\"}}";
    const char *hdrs[3] = {"X-Admin-Protocol: " MNO_PROTO, "WWW-Authenticate: Bearer", NULL};
    int64_t gen = authstore_generation(m->auth);
    bool retry = false;

    if (gen == h->auth_gen && (h->cred.expires_at == 0 || now < h->cred.expires_at)) {
        return 1; /* nothing revoked since it was last good */
    }
    if (mno_cred_ok(m, &h->cred, now, &retry)) {
        if (retry) {
            return -1; /* a lookup that failed is no proof: no script on it */
        }
        h->auth_gen = gen;
        return 1;
    }
    OT_LOG_WARN("mno %s: job %lld: held POST of device %lld refused: its credential is no longer"
                " valid",
                m->instance, (long long)h->job_id, (long long)h->device_id);
    (void)net_stream_answer_hdrs(h->s, 401, "application/json", hdrs, body, sizeof(body) - 1);
    if (audit_enqueue(m->db, &h->refusal) != OT_OK) {
        OT_LOG_ERROR("mno %s: job %lld: the audit of a refused held POST failed", m->instance,
                     (long long)h->job_id);
    }
    return 0;
}

/* One held POST whose credential is good: true when answered. */
static bool mno_held_one(struct mno *m, struct db_conn *c, struct mno_held *h, int64_t now)
{
    struct mno_ajob j;
    struct mno_sc next;
    bool answered = false;
    ot_err err;

    memset(&next, 0, sizeof(next));
    if (db_begin(c) != OT_OK) {
        return false;
    }
    err = mno_ajob_load(m, c, h->job_id, h->device_id, &j);
    if (err == OT_E_NOT_FOUND
        || (err == OT_OK && (j.state != MNO_J_RUNNING || j.session_no != h->session_no))) {
        /* Over, or run again in a session of its own since (this one was
         * lost): nothing more for this POST's card session. */
        mno_held_answer(m, h, 204, NULL);
        answered = true;
    } else if (err == OT_OK) {
        err = mno_sc_load(c, j.id, h->seq + 1, &next);
        if (err == OT_OK) {
            mno_held_answer(m, h, 200, &next);
            answered = true;
        } else if (err == OT_E_NOT_FOUND && j.closed) {
            /* Closed after these responses: the job is over. */
            err = mno_job_move(m, c, j.id, MNO_EV_FINISH, NULL);
            if (err == OT_OK && db_commit(c) == OT_OK) {
                mno_held_answer(m, h, 204, NULL);
                answered = true;
            }
        } else if (err == OT_E_NOT_FOUND && now >= h->deadline) {
            mno_held_answer(m, h, 202, NULL);
            answered = true;
        }
    }
    mno_sc_free(&next);
    (void)db_rollback(c); /* no-op after a commit */
    return answered;
}

void mno_held_check(struct mno *m, bool full)
{
    uint64_t touches;
    struct mno_held *list;
    struct mno_held *keep = NULL;
    struct db_conn *c = NULL;
    int64_t now = mno_now();

    pthread_mutex_lock(&m->mu);
    list = m->held;
    m->held = NULL;
    m->held_busy = list != NULL;
    touches = m->held_touches;
    pthread_mutex_unlock(&m->mu);
    /* Credentials first: the checks read the auth store on connections of
     * their own, so none is held meanwhile (with db.pool 1 they starved). */
    for (struct mno_held *h = list; h != NULL; h = h->next) {
        h->cred_now = atomic_load(&h->closed) ? 1 : mno_held_cred(m, h, now);
    }
    if (list != NULL && db_acquire(m->db, &c) != OT_OK) {
        c = NULL;
    }
    while (list != NULL) {
        struct mno_held *h = list;
        bool done = atomic_load(&h->closed) || h->cred_now == 0;

        list = h->next;
        /* A kick's pass reads only the POSTs whose job may have moved (a
         * transaction each: thousands of phones may wait on their
         * submitters at once); the timer's pass reads them all (deadlines,
         * a job that moved by the sweeper or on another node). */
        if (!done && h->cred_now < 0) {
            atomic_store(&h->dirty, true); /* its credential at the next pass */
        } else if (!done && c != NULL && (full || atomic_exchange(&h->dirty, false))) {
            done = mno_held_one(m, c, h, now);
        }
        if (done) {
            mno_held_unref(h);
        } else {
            h->next = keep;
            keep = h;
        }
    }
    db_release(c);
    pthread_mutex_lock(&m->mu);
    m->held_busy = false;
    if (keep != NULL) {
        struct mno_held **tail = &keep;
        while (*tail != NULL) {
            /* A touch while they were out of the list did not find them:
             * every one is read at the next pass (which that touch's kick
             * asked for). */
            if (m->held_touches != touches) {
                atomic_store(&(*tail)->dirty, true);
            }
            tail = &(*tail)->next;
        }
        *tail = m->held;
        m->held = keep;
    }
    pthread_mutex_unlock(&m->mu);
}

bool mno_held_touch(struct mno *m, int64_t job_id, int64_t device_id)
{
    bool yes = false;

    pthread_mutex_lock(&m->mu);
    m->held_touches++;
    yes = m->held_busy; /* maybe out of the list for a pass: the next pass reads them all */
    for (struct mno_held *h = m->held; h != NULL; h = h->next) {
        if ((job_id > 0 && h->job_id == job_id) || (device_id > 0 && h->device_id == device_id)) {
            atomic_store(&h->dirty, true);
            yes = true;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return yes;
}

void mno_held_drop(struct mno *m)
{
    while (m->held != NULL) {
        struct mno_held *h = m->held;
        m->held = h->next;
        mno_held_unref(h);
    }
}

/* POST /admin/jobs/{id}/scripts/{n}: the responses of script n (or a
 * status without them). */
void mno_h_admin_script(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct mno *m = ctx;
    struct db_conn *c = NULL;
    struct mno_device d;
    struct mno_msg msg;
    struct mno_ajob j;
    struct mno_sc sc;
    struct mno_script cmd;
    struct mno_script rsp;
    struct mno_script_err serr;
    int64_t job_id = 0;
    int64_t seq = 0;
    const char *ns = net_req_param(req, "n");
    bool se_ok = false;
    bool commit = false;
    bool hold = false;
    char res[96];
    ot_err err = OT_OK;

    memset(&sc, 0, sizeof(sc));
    memset(&cmd, 0, sizeof(cmd));
    memset(&rsp, 0, sizeof(rsp));
    if (!mno_req_msg(req, resp, false, &msg)) {
        return;
    }
    if (ns != NULL && strcmp(ns, "0") == 0) {
        seq = 0;
    } else if (ns == NULL || !svc_id_parse(ns, &seq)) {
        mno_admin_err(resp, OT_E_NOT_FOUND, NULL, "no such script", NULL);
        return;
    }
    if (seq == 0 && msg.status == MNO_ST_OK) {
        mno_admin_err(resp, OT_E_FORMAT, NULL, "script 0 takes a status other than ok",
                      "X-Admin-Script-Status");
        return;
    }
    if (!mno_admin_begin(m, req, resp, &c, &d, &job_id)) {
        return;
    }
    err = mno_ajob_load(m, c, job_id, d.id, &j);
    if (err == OT_E_NOT_FOUND) {
        mno_admin_err(resp, err, NULL, "no such job", NULL);
        goto done;
    }
    OT_TRY(err);
    if (strcmp(msg.imei, d.imei) != 0) {
        mno_admin_err(resp, OT_E_FORMAT, NULL, "the IMEI is not this device's", "X-Admin-From");
        goto done;
    }
    if (msg.status != MNO_ST_SE_UNAVAILABLE) {
        OT_TRY(mno_ajob_se_check(m, c, &j, &msg, &se_ok));
        if (!se_ok) {
            mno_admin_err(resp, OT_E_FORMAT, NULL, "the SE is not the job's", "X-Admin-From");
            goto done;
        }
    }
    if (seq > 0) {
        err = mno_sc_load(c, j.id, seq, &sc);
        if (err == OT_E_NOT_FOUND) {
            mno_admin_err(resp, OT_E_STATE, "session_state", "no such script in this session",
                          NULL);
            err = OT_OK;
            goto done;
        }
        OT_TRY(err);
    }
    if (msg.status == MNO_ST_OK) {
        /* Parse before anything changes. */
        if (mno_cmd_parse(sc.cmd, sc.cmd_n, &cmd, &serr) != OT_OK) {
            OT_FAIL(OT_E_CORRUPT);
        }
        if (mno_rsp_parse(msg.body, msg.body_n, cmd.n, &rsp, &serr) != OT_OK) {
            char text[160];
            snprintf(text, sizeof(text), "offset %zu: %s", serr.offset, serr.msg);
            mno_admin_err(resp, OT_E_FORMAT, "bad_script", text, "body");
            goto done;
        }
        if (sc.rsp != NULL) {
            /* A repeat: the same bytes get the same answer. */
            if (sc.rsp_n != msg.body_n || memcmp(sc.rsp, msg.body, msg.body_n) != 0) {
                mno_admin_err(resp, OT_E_CONFLICT, "script_mismatch",
                              "script has other responses already", NULL);
                goto done;
            }
            OT_TRY(mno_after(m, c, req, resp, &j, seq, &commit, &hold));
            OT_TRY(mno_session_touch(m, c, j.id));
            if (mno_admin_commit(m, &c, resp, d.id) && hold) {
                mno_hold(m, req, resp, &d, &j, seq);
            }
            goto done;
        }
        if (j.state != MNO_J_RUNNING && j.state != MNO_J_CANCELLED && j.state != MNO_J_EXPIRED) {
            mno_admin_err(resp, OT_E_STATE, "session_state", "the job's session is not open", NULL);
            goto done;
        }
        {
            struct mno_sc probe;
            /* Only the last script takes responses. */
            err = mno_sc_load(c, j.id, seq + 1, &probe);
            if (err == OT_OK) {
                mno_sc_free(&probe);
                mno_admin_err(resp, OT_E_STATE, "session_state",
                              "a later script is current in this session", NULL);
                goto done;
            }
            if (err != OT_E_NOT_FOUND) {
                OT_TRY(err);
            }
            err = OT_OK;
        }
        OT_TRY(mno_rsp_store(c, j.id, seq, msg.body, msg.body_n));
        {
            bool blocked = false;
            size_t stop = 0;
            uint16_t sw = 0;
            OT_TRY(mno_auth_account(m, c, req, &j, &cmd, &rsp, &blocked));
            ot_err oc = mno_script_outcome(&cmd, &rsp, &stop, &sw);
            if (j.state == MNO_J_RUNNING && (blocked || (oc != OT_OK && !j.interactive))) {
                OT_TRY(mno_job_stop(c, j.id, stop, sw));
                const char *why = blocked                                   ? "se_blocked"
                                  : mno_script_guard_stop(&cmd, &rsp, stop) ? "guard"
                                                                            : "script stopped";
                OT_TRY(mno_job_move(m, c, j.id, MNO_EV_FAIL, why));
                snprintf(res, sizeof(res), "%s/jobs/%lld", m->prefix, (long long)j.id);
                OT_TRY(svc_audit(m->kit, c, req, "mno.job.fail", res, why));
                j.state = MNO_J_FAILED;
            } else if (j.state == MNO_J_RUNNING && oc != OT_OK) {
                OT_TRY(mno_job_stop(c, j.id, stop, sw));
            }
        }
        OT_TRY(mno_after(m, c, req, resp, &j, seq, &commit, &hold));
        OT_TRY(mno_session_touch(m, c, j.id));
        if (j.interactive) {
            OT_TRY(mno_job_note(m, c, j.id)); /* its submitter may wait on another node */
        }
        if (mno_admin_commit(m, &c, resp, d.id) && hold) {
            mno_hold(m, req, resp, &d, &j, seq);
        }
        goto done;
    }
    /* A status without responses. */
    snprintf(res, sizeof(res), "%s/jobs/%lld", m->prefix, (long long)j.id);
    if (seq == 0 && (j.state == MNO_J_QUEUED || j.state == MNO_J_DELIVERING)) {
        /* Refused before the session opened (the SE is not there). */
        OT_TRY(mno_job_move(m, c, j.id, MNO_EV_GIVE_UP, mno_status_name(msg.status)));
        OT_TRY(svc_audit(m->kit, c, req, "mno.job.fail", res, mno_status_name(msg.status)));
        mno_send_end(resp);
        mno_admin_commit(m, &c, resp, d.id);
        goto done;
    }
    if (j.state != MNO_J_RUNNING) {
        mno_send_end(resp);
        goto done;
    }
    if (seq > 0 && sc.rsp != NULL) {
        mno_admin_err(resp, OT_E_STATE, "session_state", "this script has its responses", NULL);
        goto done;
    }
    if (msg.status == MNO_ST_INTERRUPTED) {
        OT_TRY(mno_job_interrupt(m, c, j.id, "interrupted"));
        OT_TRY(svc_audit(m->kit, c, req, "mno.job.interrupted", res, "interrupted"));
    } else {
        OT_TRY(mno_job_move(m, c, j.id, MNO_EV_FAIL, mno_status_name(msg.status)));
        OT_TRY(svc_audit(m->kit, c, req, "mno.job.fail", res, mno_status_name(msg.status)));
    }
    if (j.interactive) {
        OT_TRY(mno_job_note(m, c, j.id));
    }
    mno_send_end(resp);
    mno_admin_commit(m, &c, resp, d.id);
out:
    if (err != OT_OK) {
        mno_admin_err(resp, err, NULL, NULL, NULL);
    }
done:
    mno_script_free(&cmd);
    mno_script_free(&rsp);
    mno_sc_free(&sc);
    svc_tx_abort(&c);
}
