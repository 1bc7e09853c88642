/* mno: the mobile network platform, one instance per network (mno.h,
 * docs/mno.md, docs/ota.md). This file: the descriptor, tables, options,
 * routes, and what the handler files share. */
#define OT_LOG_COMPONENT "mno"
#include "mno/mno.h"

#include "core/log.h"
#include "core/thread.h"
#include "db/db.h"
#include "mno/mno_priv.h"
#include "net/config.h"
#include "svc/kit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct db_migration mno_migrations[] = {
    {1,
     "CREATE TABLE mno_devices ("
     " id INTEGER PRIMARY KEY,"
     " instance TEXT NOT NULL,"
     " principal_id BIGINT NOT NULL,"
     " imei TEXT NOT NULL,"
     " imsi TEXT NOT NULL,"
     " msisdn TEXT NOT NULL,"
     " online BIGINT NOT NULL DEFAULT 0,"
     " location_area TEXT,"
     " last_seen BIGINT NOT NULL DEFAULT 0,"
     " lease_expires BIGINT NOT NULL DEFAULT 0,"
     " created_at BIGINT NOT NULL,"
     " UNIQUE (instance, principal_id),"
     " UNIQUE (instance, imei),"
     " UNIQUE (instance, imsi),"
     " UNIQUE (instance, msisdn));"
     "CREATE TABLE mno_known_cins ("
     " instance TEXT NOT NULL,"
     " device_id BIGINT NOT NULL,"
     " cin BLOB NOT NULL,"
     " PRIMARY KEY (instance, cin));"
     "CREATE TABLE mno_ses ("
     " instance TEXT NOT NULL,"
     " device_id BIGINT NOT NULL,"
     " cin BLOB NOT NULL,"
     " reader TEXT NOT NULL,"
     " iin BLOB,"
     " cplc BLOB,"
     " card_data BLOB,"
     " verified_at BIGINT NOT NULL,"
     " PRIMARY KEY (instance, device_id, cin));"
     "CREATE TABLE mno_jobs ("
     " id INTEGER PRIMARY KEY,"
     " instance TEXT NOT NULL,"
     " device_id BIGINT NOT NULL,"
     " se_cin BLOB,"
     " se_reader TEXT,"
     " aid BLOB NOT NULL,"
     " interactive BIGINT NOT NULL,"
     " state TEXT NOT NULL,"
     " priority BIGINT NOT NULL,"
     " expires_at BIGINT NOT NULL,"
     " max_attempts BIGINT NOT NULL,"
     " attempts BIGINT NOT NULL DEFAULT 0,"
     " not_before BIGINT NOT NULL DEFAULT 0,"
     " deliver_by BIGINT NOT NULL DEFAULT 0,"
     " destructive BIGINT NOT NULL,"
     " closed BIGINT NOT NULL DEFAULT 0,"
     " submitter BIGINT NOT NULL,"
     " reason TEXT,"
     " stop_index BIGINT,"
     " stop_sw BIGINT,"
     " created_at BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL);"
     "CREATE INDEX mno_jobs_queue ON mno_jobs (instance, state, device_id, priority);"
     "CREATE TABLE mno_scripts ("
     " id INTEGER PRIMARY KEY,"
     " job_id BIGINT NOT NULL,"
     " seq BIGINT NOT NULL,"
     " cmd BLOB NOT NULL,"
     " rsp BLOB,"
     " created_at BIGINT NOT NULL,"
     " answered_at BIGINT,"
     " UNIQUE (job_id, seq));"
     "CREATE TABLE mno_events ("
     " id INTEGER PRIMARY KEY,"
     " instance TEXT NOT NULL,"
     " device_id BIGINT NOT NULL,"
     " kind TEXT NOT NULL,"
     " data TEXT NOT NULL,"
     " created_at BIGINT NOT NULL);"
     "CREATE INDEX mno_events_dev ON mno_events (instance, device_id, id);"
     "CREATE TABLE mno_auth_failures ("
     " instance TEXT NOT NULL,"
     " cin BLOB NOT NULL,"
     " kvn BIGINT NOT NULL,"
     " failures BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL,"
     " PRIMARY KEY (instance, cin, kvn));"
     "CREATE TABLE mno_alerts ("
     " id INTEGER PRIMARY KEY,"
     " instance TEXT NOT NULL,"
     " cin BLOB NOT NULL,"
     " kvn BIGINT NOT NULL,"
     " failures BIGINT NOT NULL,"
     " cleared BIGINT NOT NULL DEFAULT 0,"
     " created_at BIGINT NOT NULL)",
     NULL},
    /* Every event row was announced at commit on MNO_CHANNEL, so the node
     * holding the device's stream pushed it whoever wrote it (replaced by
     * version 8). SQLite: one process, which pushes its own rows. */
    {2, "SELECT 1",
     "CREATE OR REPLACE FUNCTION mno_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$"
     " BEGIN PERFORM pg_notify('" MNO_CHANNEL "', NEW.instance || ':' || NEW.device_id);"
     " RETURN NULL; END $$;"
     "CREATE TRIGGER mno_events_notify AFTER INSERT ON mno_events"
     " FOR EACH ROW EXECUTE FUNCTION mno_events_notify();"},
    /* Backstage requests to a device's agent (seed 001). */
    {3,
     "CREATE TABLE mno_backstage ("
     " id INTEGER PRIMARY KEY,"
     " instance TEXT NOT NULL,"
     " device_id BIGINT NOT NULL,"
     " op TEXT NOT NULL,"
     " cin BLOB,"
     " reader TEXT,"
     " state TEXT NOT NULL,"
     " error TEXT,"
     " result TEXT,"
     " requester BIGINT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " answered_at BIGINT)",
     NULL},
    /* Signed result callbacks. */
    {4,
     "ALTER TABLE mno_jobs ADD COLUMN callback TEXT;"
     "ALTER TABLE mno_jobs ADD COLUMN cb_state TEXT;"
     "ALTER TABLE mno_jobs ADD COLUMN cb_attempts BIGINT NOT NULL DEFAULT 0;"
     "ALTER TABLE mno_jobs ADD COLUMN cb_next BIGINT NOT NULL DEFAULT 0",
     NULL},
    /* Lookups that scanned whole tables: a device's known CINs (its JSON at
     * enrolment, the admin session's SE check) and the callbacks waiting
     * (every sweeper pass, among all the ended jobs). */
    {5,
     "CREATE INDEX mno_known_cins_dev ON mno_known_cins (instance, device_id);"
     "CREATE INDEX mno_jobs_cb ON mno_jobs (instance, cb_next) WHERE cb_state = 'wait'",
     NULL},
    /* The open admin session's deadline (running: session_timeout_s after
     * the agent's last POST) and its number (one more at each open). */
    {6,
     "ALTER TABLE mno_jobs ADD COLUMN session_by BIGINT NOT NULL DEFAULT 0;"
     "ALTER TABLE mno_jobs ADD COLUMN session_no BIGINT NOT NULL DEFAULT 0",
     NULL},
    /* SQLite read a device's known CINs in CIN order through the primary key
     * (every CIN of the instance: 90 s of a 19,000-device enrolment); with cin
     * in the index both back ends read only the device's. */
    {7,
     "DROP INDEX mno_known_cins_dev;"
     "CREATE INDEX mno_known_cins_dev ON mno_known_cins (instance, device_id, cin)",
     NULL},
    /* The node holding a device's stream is told after commit by the writer
     * (mno_push_kick, only when it does not hold the stream itself), not by
     * a trigger: pg_notify in the writing transaction took the cluster's
     * notify-queue lock until its commit had flushed, one job transaction
     * at a time across all nodes. */
    {8, "SELECT 1",
     "DROP TRIGGER IF EXISTS mno_events_notify ON mno_events;"
     "DROP FUNCTION IF EXISTS mno_events_notify()"},
    /* A device's active jobs (the wake's "none delivering or running", a
     * registration's pending count) were read through mno_jobs_queue by
     * instance alone (device_id behind state in it): every job of the
     * instance, done ones included, per wake. */
    {9, "CREATE INDEX mno_jobs_dev ON mno_jobs (instance, device_id, state)", NULL},
};

static const struct cfg_opt mno_opts[] = {
    {"mno.lease_s",
     CFG_INT,
     {.i = 90},
     2,
     86400,
     0,
     "Seconds a device stays online after its last registration or heartbeat."},
    {"mno.heartbeat_s",
     CFG_INT,
     {.i = 30},
     1,
     86400,
     0,
     "Heartbeat interval told to devices (lease_s should be about three of them)."},
    {"mno.deliver_timeout_s",
     CFG_INT,
     {.i = 60},
     1,
     86400,
     0,
     "Seconds a woken device has to open the job's admin session before the wake counts as "
     "a failed delivery attempt."},
    {"mno.session_timeout_s",
     CFG_INT,
     {.i = 120},
     1,
     86400,
     0,
     "Seconds an open admin session may go without a POST of its agent before the job counts "
     "as interrupted (destructive: outcome_unknown; else another attempt, or failed)."},
    {"mno.backoff_s",
     CFG_INT,
     {.i = 5},
     0,
     86400,
     0,
     "Base of the exponential back-off between delivery attempts of a job."},
    {"mno.auth_fail_limit",
     CFG_INT,
     {.i = 3},
     1,
     1000,
     0,
     "Failed EXTERNAL AUTHENTICATEs per SE and key version before the SE's jobs stop "
     "with an alert."},
    {"mno.event_retention_s",
     CFG_INT,
     {.i = 86400},
     60,
     31536000,
     0,
     "Seconds push and platform events are kept for resumption."},
    {"mno.sweep_ms",
     CFG_INT,
     {.i = 500},
     10,
     60000,
     0,
     "Interval of the sweeper (leases, delivery timeouts, expiry, wake-ups)."},
};

int64_t mno_now(void)
{
    return (int64_t)time(NULL);
}

bool mno_row_instance(const struct mno *m, struct db_stmt *st, int col)
{
    const char *t = NULL;

    return db_col_text(st, col, &t) == OT_OK && t != NULL && strcmp(t, m->instance) == 0;
}

bool mno_digits_ok(const char *s, size_t min, size_t max)
{
    size_t n = 0;

    for (; s != NULL && s[n] != '\0'; n++) {
        if (n >= max || s[n] < '0' || s[n] > '9') {
            return false;
        }
    }
    return s != NULL && n >= min;
}

static bool mno_chars_ok(const char *s, size_t max, const char *extra)
{
    size_t n = 0;

    for (; s != NULL && s[n] != '\0'; n++) {
        char ch = s[n];
        if (n >= max
            || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
                 || strchr(extra, ch) != NULL)) {
            return false;
        }
    }
    return s != NULL && n > 0;
}

bool mno_la_ok(const char *s)
{
    return mno_chars_ok(s, MNO_LA_MAX, "._:-");
}

bool mno_reader_ok(const char *s)
{
    return mno_chars_ok(s, MNO_READER_MAX, "._-");
}

ot_err mno_device_of_caller(struct mno *m, struct db_conn *c, const struct net_req *req,
                            struct mno_device *out)
{
    const struct net_principal *p = net_req_principal(req);
    struct db_stmt *st = NULL;
    bool row = false;
    size_t len;
    const char *la = NULL;
    int64_t on = 0;
    ot_err err = OT_OK;

    memset(out, 0, sizeof(*out));
    if (p == NULL || p->kind != NET_P_DEVICE) {
        return OT_E_NOT_FOUND;
    }
    OT_TRY(db_prepare(c,
                      "SELECT id, imei, imsi, msisdn, online, location_area, last_seen,"
                      " lease_expires FROM mno_devices WHERE instance = $1 AND principal_id = $2",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, p->id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_int64(st, 0, &out->id));
    len = sizeof(out->imei);
    OT_TRY(db_col_text_copy(st, 1, out->imei, &len));
    len = sizeof(out->imsi);
    OT_TRY(db_col_text_copy(st, 2, out->imsi, &len));
    len = sizeof(out->msisdn);
    OT_TRY(db_col_text_copy(st, 3, out->msisdn, &len));
    OT_TRY(db_col_int64(st, 4, &on));
    OT_TRY(db_col_text(st, 5, &la));
    snprintf(out->la, sizeof(out->la), "%s", la != NULL ? la : "");
    OT_TRY(db_col_int64(st, 6, &out->last_seen));
    OT_TRY(db_col_int64(st, 7, &out->lease_expires));
    out->online = on != 0;
    out->principal_id = p->id;
out:
    db_reset(st);
    return err;
}

ot_err mno_event_add(struct mno *m, struct db_conn *c, int64_t device_id, const char *kind,
                     const char *data)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "INSERT INTO mno_events (instance, device_id, kind, data, created_at)"
                      " VALUES ($1, $2, $3, $4, $5)",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, device_id));
    OT_TRY(db_bind_text(st, 3, kind));
    OT_TRY(db_bind_text(st, 4, data));
    OT_TRY(db_bind_int64(st, 5, mno_now()));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

static ot_err mno_job_state_of(struct db_conn *c, int64_t job_id, enum mno_job_state *s,
                               int64_t *attempts, int64_t *max_attempts, bool *destructive,
                               int64_t *device_id)
{
    struct db_stmt *st = NULL;
    bool row = false;
    const char *name = NULL;
    int64_t d = 0;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "SELECT state, attempts, max_attempts, destructive, device_id FROM mno_jobs"
                      " WHERE id = $1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, job_id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_text(st, 0, &name));
    OT_TRY(mno_job_state_parse(name, s));
    OT_TRY(db_col_int64(st, 1, attempts));
    OT_TRY(db_col_int64(st, 2, max_attempts));
    OT_TRY(db_col_int64(st, 3, &d));
    *destructive = d != 0;
    OT_TRY(db_col_int64(st, 4, device_id));
out:
    db_reset(st);
    return err;
}

/* A job back in the queue after an open session (interrupted, or requeued
 * by the submitter) runs again from the start, as a new attempt: its
 * scripts lose the responses of the lost session, and an interactive job
 * keeps only its first batch (the later ones were written from answers
 * that are gone: the submitter writes them again from the new ones). */
static ot_err mno_job_restart(struct db_conn *c, int64_t job_id)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "DELETE FROM mno_scripts WHERE job_id = $1 AND seq > 1 AND EXISTS (SELECT 1"
                      " FROM mno_jobs WHERE id = $1 AND interactive = 1)",
                      &st));
    OT_TRY(db_bind_int64(st, 1, job_id));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    OT_TRY(db_prepare(c,
                      "UPDATE mno_scripts SET rsp = NULL, answered_at = NULL WHERE job_id = $1"
                      " AND rsp IS NOT NULL",
                      &st));
    OT_TRY(db_bind_int64(st, 1, job_id));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

ot_err mno_job_move(struct mno *m, struct db_conn *c, int64_t job_id, enum mno_job_event ev,
                    const char *reason)
{
    struct db_stmt *st = NULL;
    enum mno_job_state from;
    enum mno_job_state to;
    int64_t attempts = 0;
    int64_t max_attempts = 0;
    int64_t device_id = 0;
    int64_t now = mno_now();
    bool destructive = false;
    bool row = false;
    bool restart;
    ot_err err = OT_OK;

    OT_TRY(mno_job_state_of(c, job_id, &from, &attempts, &max_attempts, &destructive, &device_id));
    OT_TRY(mno_job_next(from, ev, &to));
    restart = to == MNO_J_QUEUED && (from == MNO_J_RUNNING || from == MNO_J_OUTCOME_UNKNOWN);
    /* A wake counts a delivery attempt and sets its deadline; a return to
     * the queue waits out the back-off (base * 2^(attempts-1)); an open
     * session gets its number and its deadline; a restart forgets the
     * session's close and stop. */
    OT_TRY(db_prepare(c,
                      "UPDATE mno_jobs SET state = $1, updated_at = $2,"
                      " reason = COALESCE($3, reason),"
                      " attempts = attempts + $4,"
                      " deliver_by = CASE WHEN $4 = 1 THEN $5 ELSE deliver_by END,"
                      " not_before = CASE WHEN $6 > 0 THEN $6 ELSE not_before END,"
                      " session_by = CASE WHEN $9 > 0 THEN $9 ELSE session_by END,"
                      " session_no = session_no + CASE WHEN $9 > 0 THEN 1 ELSE 0 END,"
                      " closed = CASE WHEN $10 = 1 THEN 0 ELSE closed END,"
                      " stop_index = CASE WHEN $10 = 1 THEN NULL ELSE stop_index END,"
                      " stop_sw = CASE WHEN $10 = 1 THEN NULL ELSE stop_sw END"
                      " WHERE id = $7 AND state = $8",
                      &st));
    OT_TRY(db_bind_text(st, 1, mno_job_state_name(to)));
    OT_TRY(db_bind_int64(st, 2, now));
    OT_TRY(db_bind_text(st, 3, reason));
    OT_TRY(db_bind_int64(st, 4, ev == MNO_EV_WAKE ? 1 : 0));
    OT_TRY(db_bind_int64(st, 5, now + m->deliver_timeout_s));
    {
        int64_t nb = 0;
        if (to == MNO_J_QUEUED && ev != MNO_EV_REQUEUE) {
            int64_t shift = attempts > 1 ? attempts - 1 : 0;
            nb = now + (m->backoff_s << (shift < 16 ? shift : 16));
        }
        OT_TRY(db_bind_int64(st, 6, nb));
    }
    OT_TRY(db_bind_int64(st, 7, job_id));
    OT_TRY(db_bind_text(st, 8, mno_job_state_name(from)));
    OT_TRY(db_bind_int64(st, 9, to == MNO_J_RUNNING ? now + m->session_timeout_s : 0));
    OT_TRY(db_bind_int64(st, 10, restart ? 1 : 0));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) != 1) {
        OT_FAIL(OT_E_STATE);
    }
    if (restart) {
        db_reset(st);
        st = NULL;
        OT_TRY(mno_job_restart(c, job_id));
    }
    if (to == MNO_J_DONE) {
        atomic_fetch_add(&m->m_jobs_done, 1);
    } else if (to == MNO_J_FAILED || to == MNO_J_OUTCOME_UNKNOWN) {
        atomic_fetch_add(&m->m_jobs_failed, 1);
    }
    if (ev == MNO_EV_CANCEL && from != MNO_J_QUEUED) {
        char data[64];
        snprintf(data, sizeof(data), "{\"job\":\"%lld\"}", (long long)job_id);
        db_reset(st);
        st = NULL;
        OT_TRY(mno_event_add(m, c, device_id, "cancel", data));
    }
out:
    db_reset(st);
    return err;
}

ot_err mno_session_touch(struct mno *m, struct db_conn *c, int64_t job_id)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "UPDATE mno_jobs SET session_by = $1 WHERE id = $2 AND state = 'running'"
                      " AND session_by < $1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, mno_now() + m->session_timeout_s));
    OT_TRY(db_bind_int64(st, 2, job_id));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

ot_err mno_job_interrupt(struct mno *m, struct db_conn *c, int64_t job_id, const char *reason)
{
    enum mno_job_state s;
    int64_t attempts = 0;
    int64_t max_attempts = 0;
    int64_t device_id = 0;
    bool destructive = false;
    ot_err err = OT_OK;

    OT_TRY(mno_job_state_of(c, job_id, &s, &attempts, &max_attempts, &destructive, &device_id));
    if (destructive) {
        OT_TRY(mno_job_move(m, c, job_id, MNO_EV_LOST, reason));
    } else if (attempts < max_attempts) {
        OT_TRY(mno_job_move(m, c, job_id, MNO_EV_RETRY, reason));
    } else {
        OT_TRY(mno_job_move(m, c, job_id, MNO_EV_GIVE_UP, reason));
    }
out:
    return err;
}

/* ---- sweeper thread ---------------------------------------------------- */

void mno_sweep_kick(struct mno *m)
{
    pthread_mutex_lock(&m->mu);
    m->kicked = true; /* a kick during a pass gets a pass of its own */
    m->kick_all = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

void mno_sweep_kick_dev(struct mno *m, int64_t device_id)
{
    pthread_mutex_lock(&m->mu);
    m->kicked = true;
    if (device_id > 0) {
        if (m->n_kick_devs < MNO_KICK_DEVS) {
            m->kick_devs[m->n_kick_devs++] = device_id;
        } else {
            m->kick_all = true;
        }
    }
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

/* The streams' credentials are checked at least this often, whatever
 * sweep_ms is (a check without a revocation costs nothing). */
#define MNO_RECHECK_MS 250

static int64_t mno_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Kicked passes start at least this far apart: under load, the kicks of
 * many job ends share one pass (a pass reads the queue, the waiters and the
 * callbacks whatever it was kicked for); an idle node still answers a kick
 * at once. */
#define MNO_KICK_GAP_MS 2

static void *mno_sweeper(void *arg)
{
    struct mno *m = arg;
    int64_t next = 0; /* the next full pass, monotonic ms */
    int64_t last = 0; /* the last pass's start, monotonic ms */
    int64_t devs[MNO_KICK_DEVS];

    pthread_mutex_lock(&m->mu);
    while (!m->stopping) {
        struct timespec until;
        int64_t wait_ms;
        int64_t now = mno_mono_ms();
        bool full = now >= next;
        bool pass = (m->kicked && now - last >= MNO_KICK_GAP_MS) || full;
        bool all = false;
        size_t n_devs = 0;
        if (pass) {
            m->kicked = false;
            last = now;
            all = m->kick_all;
            n_devs = m->n_kick_devs;
            memcpy(devs, m->kick_devs, n_devs * sizeof(devs[0]));
            m->kick_all = false;
            m->n_kick_devs = 0;
        }
        pthread_mutex_unlock(&m->mu);
        mno_push_recheck(m);
        if (pass) {
            /* A kick (a job submitted or ended) needs the wakes and the
             * answers only; leases, timeouts and retention scan whole
             * tables and keep to the timer, which kicks never push back.
             * A kick that named its devices wakes those only (the whole
             * queue, offline phones' jobs included, keeps to the timer). */
            mno_sweep_once(m, full, all, devs, n_devs);
            mno_waiters_check(m);
            mno_held_check(m, full);
            mno_cb_deliver(m);
            if (full) {
                next = mno_mono_ms() + m->sweep_ms;
            }
        }
        pthread_mutex_lock(&m->mu);
        if (m->stopping) {
            break;
        }
        wait_ms = next - mno_mono_ms();
        if (wait_ms > MNO_RECHECK_MS) {
            wait_ms = MNO_RECHECK_MS;
        }
        if (m->kicked) {
            /* kicked during the pass or within the gap: at once, or when
             * the gap is over */
            int64_t gap = last + MNO_KICK_GAP_MS - mno_mono_ms();
            if (gap <= 0) {
                continue;
            }
            wait_ms = gap < wait_ms ? gap : wait_ms;
        }
        if (wait_ms < 1) {
            wait_ms = 1;
        }
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += wait_ms / 1000;
        until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&m->cv, &m->mu, &until);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* ---- descriptor -------------------------------------------------------- */

#define MNO_OPS    NET_P_OPERATOR
#define MNO_SUBMIT (NET_P_OPERATOR | NET_P_SP)
#define MNO_DEV    NET_P_DEVICE

static const char *const mno_q_page[] = {"cursor", "limit", NULL};
static const char *const mno_q_wait[] = {"wait", "seq", NULL};
static const char *const mno_q_status[] = {"msisdn", "imsi", "imei", NULL};

static const struct svc_route mno_route_table[] = {
    {"POST", "/devices", MNO_OPS, true, mno_h_enrol, NULL, 0},
    {"GET", "/devices", MNO_OPS, false, mno_h_device_list, mno_q_page, 0},
    {"GET", "/devices/{id}", MNO_OPS, false, mno_h_device_get, NULL, 0},
    {"GET", "/devices/{id}/secure-elements", MNO_OPS, false, mno_h_ses_get, NULL, 0},
    {"POST", "/devices/{id}/backstage", MNO_OPS, true, mno_h_bs_ask, NULL, 0},
    {"GET", "/backstage/{id}", MNO_OPS, false, mno_h_bs_get, NULL, 0},
    {"POST", "/device/backstage/{id}", MNO_DEV, false, mno_h_bs_answer, NULL, 0},
    {"GET", "/status", MNO_SUBMIT, false, mno_h_status, mno_q_status, 0},
    {"GET", "/events", MNO_OPS, false, mno_h_events, mno_q_page, 0},
    {"GET", "/device", MNO_DEV, false, mno_h_self, NULL, 0},
    {"GET", "/device/stream", MNO_DEV, false, mno_h_stream, NULL, 0},
    {"POST", "/device/register", MNO_DEV, false, mno_h_register, NULL, 0},
    {"POST", "/device/heartbeat", MNO_DEV, false, mno_h_heartbeat, NULL, SVC_R_COARSE_AUDIT},
    {"POST", "/device/location", MNO_DEV, false, mno_h_location, NULL, SVC_R_COARSE_AUDIT},
    {"POST", "/device/detach", MNO_DEV, false, mno_h_detach, NULL, 0},
    {"PUT", "/device/secure-elements", MNO_DEV, false, mno_h_ses_put, NULL, 0},
    {"POST", "/jobs", MNO_SUBMIT, true, mno_h_job_submit, NULL, 0},
    {"GET", "/jobs", MNO_SUBMIT, false, mno_h_job_list, mno_q_page, 0},
    {"GET", "/jobs/{id}", MNO_SUBMIT, false, mno_h_job_get, mno_q_wait, 0},
    {"POST", "/jobs/{id}/cancel", MNO_SUBMIT, false, mno_h_job_cancel, NULL, 0},
    {"POST", "/jobs/{id}/batches", MNO_SUBMIT, true, mno_h_job_batch, NULL, 0},
    {"POST", "/jobs/{id}/close", MNO_SUBMIT, false, mno_h_job_close, NULL, 0},
    {"POST", "/jobs/{id}/resolve", MNO_SUBMIT, false, mno_h_job_resolve, NULL, 0},
    {"GET", "/callback-key", MNO_SUBMIT, false, mno_h_cb_key, NULL, 0},
    {"GET", "/alerts", MNO_OPS, false, mno_h_alerts, mno_q_page, 0},
    {"POST", "/alerts/{id}/clear", MNO_OPS, false, mno_h_alert_clear, NULL, 0},
    {"POST", "/admin/jobs/{id}", MNO_DEV, false, mno_h_admin_open, NULL, SVC_R_COARSE_AUDIT},
    {"POST", "/admin/jobs/{id}/scripts/{n}", MNO_DEV, false, mno_h_admin_script, NULL,
     SVC_R_COARSE_AUDIT},
};

static const struct svc_route *mno_routes(size_t *n)
{
    *n = sizeof(mno_route_table) / sizeof(mno_route_table[0]);
    return mno_route_table;
}

static ot_err mno_create(const struct svc_env *env, void **out)
{
    struct mno *m = calloc(1, sizeof(*m));
    ot_err err;

    *out = NULL;
    if (m == NULL) {
        return OT_E_NOMEM;
    }
    m->kit = env->kit;
    m->db = env->db;
    m->auth = env->auth;
    m->ks = env->ks;
    snprintf(m->instance, sizeof(m->instance), "%s", env->instance);
    snprintf(m->prefix, sizeof(m->prefix), "%s", env->prefix);
    m->lease_s = svc_cfg_int(env, "lease_s");
    m->heartbeat_s = svc_cfg_int(env, "heartbeat_s");
    m->deliver_timeout_s = svc_cfg_int(env, "deliver_timeout_s");
    m->session_timeout_s = svc_cfg_int(env, "session_timeout_s");
    m->backoff_s = svc_cfg_int(env, "backoff_s");
    m->auth_fail_limit = svc_cfg_int(env, "auth_fail_limit");
    m->event_retention_s = svc_cfg_int(env, "event_retention_s");
    m->sweep_ms = svc_cfg_int(env, "sweep_ms");
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    err = mno_push_start(m);
    if (err == OT_OK) {
        err = ot_thread_start(&m->sweeper, mno_sweeper, m);
    }
    if (err != OT_OK) {
        mno_push_stop(m);
        pthread_cond_destroy(&m->cv);
        pthread_mutex_destroy(&m->mu);
        free(m);
        return err;
    }
    m->sweeper_on = true;
    *out = m;
    return OT_OK;
}

static void mno_destroy(void *svc)
{
    struct mno *m = svc;

    if (m == NULL) {
        return;
    }
    if (m->sweeper_on) {
        pthread_mutex_lock(&m->mu);
        m->stopping = true;
        pthread_cond_signal(&m->cv);
        pthread_mutex_unlock(&m->mu);
        pthread_join(m->sweeper, NULL);
    }
    mno_waiters_drop(m);
    mno_held_drop(m);
    mno_push_stop(m);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static double mno_m_alerts(void *ctx)
{
    return (double)atomic_load(&((struct mno *)ctx)->m_alerts);
}

static double mno_m_done(void *ctx)
{
    return (double)atomic_load(&((struct mno *)ctx)->m_jobs_done);
}

static double mno_m_failed(void *ctx)
{
    return (double)atomic_load(&((struct mno *)ctx)->m_jobs_failed);
}

static double mno_m_authfail(void *ctx)
{
    return (double)atomic_load(&((struct mno *)ctx)->m_auth_failures);
}

static double mno_m_revoked(void *ctx)
{
    return (double)atomic_load(&((struct mno *)ctx)->m_streams_revoked);
}

static double mno_m_notes_dropped(void *ctx)
{
    return (double)atomic_load(&((struct mno *)ctx)->m_notes_dropped);
}

static double mno_m_streams(void *ctx)
{
    return (double)mno_push_count(ctx);
}

static ot_err mno_metrics(void *svc, struct net_metrics *nm)
{
    struct mno *m = svc;
    char name[7][64];
    ot_err err = OT_OK;

    snprintf(name[0], sizeof(name[0]), "mno_%s_auth_alerts_total",
             m->instance[0] ? m->instance : "default");
    snprintf(name[1], sizeof(name[1]), "mno_%s_jobs_done_total",
             m->instance[0] ? m->instance : "default");
    snprintf(name[2], sizeof(name[2]), "mno_%s_jobs_failed_total",
             m->instance[0] ? m->instance : "default");
    snprintf(name[3], sizeof(name[3]), "mno_%s_auth_failures_total",
             m->instance[0] ? m->instance : "default");
    snprintf(name[4], sizeof(name[4]), "mno_%s_device_streams",
             m->instance[0] ? m->instance : "default");
    snprintf(name[5], sizeof(name[5]), "mno_%s_streams_revoked_total",
             m->instance[0] ? m->instance : "default");
    snprintf(name[6], sizeof(name[6]), "mno_%s_notices_dropped_total",
             m->instance[0] ? m->instance : "default");
    OT_TRY(net_metrics_register(nm, name[6],
                                "PostgreSQL wake-up notices to other nodes not sent (queue full):"
                                " their devices get the rows at their next stream or wake.",
                                NET_METRIC_COUNTER, mno_m_notes_dropped, m));
    OT_TRY(net_metrics_register(nm, name[5],
                                "Device push streams closed because their credential was revoked,"
                                " expired or its device disabled.",
                                NET_METRIC_COUNTER, mno_m_revoked, m));
    OT_TRY(net_metrics_register(nm, name[4], "Device push streams this node holds.",
                                NET_METRIC_GAUGE, mno_m_streams, m));
    OT_TRY(net_metrics_register(nm, name[0],
                                "SEs stopped after too many failed EXTERNAL AUTHENTICATEs.",
                                NET_METRIC_COUNTER, mno_m_alerts, m));
    OT_TRY(net_metrics_register(nm, name[1], "OTA jobs done.", NET_METRIC_COUNTER, mno_m_done, m));
    OT_TRY(net_metrics_register(nm, name[2], "OTA jobs failed or with an unknown outcome.",
                                NET_METRIC_COUNTER, mno_m_failed, m));
    OT_TRY(net_metrics_register(nm, name[3], "Failed EXTERNAL AUTHENTICATEs seen.",
                                NET_METRIC_COUNTER, mno_m_authfail, m));
out:
    return err;
}

const struct svc_def mno_svc_def = {
    .name = "mno",
    .summary =
        "Mobile network platform: devices, push, OTA jobs, admin sessions (one per network).",
    .instances = true,
    .opts = mno_opts,
    .n_opts = sizeof(mno_opts) / sizeof(mno_opts[0]),
    .migrations = mno_migrations,
    .n_migrations = sizeof(mno_migrations) / sizeof(mno_migrations[0]),
    .create = mno_create,
    .destroy = mno_destroy,
    .routes = mno_routes,
    .metrics = mno_metrics,
    .ready = NULL,
};
