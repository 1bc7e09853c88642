/* mno sweeper: one pass over an instance's devices and jobs (leases,
 * delivery timeouts, time-to-live, wake-ups, event retention). Every node
 * runs it; each step is a compare-and-set on the rows it moves, and the
 * wake-up claim takes row locks without waiting on PostgreSQL (FOR UPDATE
 * SKIP LOCKED), so nodes share the work and never move a job twice. */
#define OT_LOG_COMPONENT "mno"
#include "core/log.h"
#include "db/db.h"
#include "mno/mno_priv.h"

#include <stdio.h>
#include <string.h>

#define MNO_SWEEP_BATCH 256

/* ids of up to MNO_SWEEP_BATCH rows of sql (params: instance, now). */
static ot_err mno_ids(struct mno *m, struct db_conn *c, const char *sql, int64_t now, int64_t *ids,
                      int64_t *aux, size_t *n)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    *n = 0;
    OT_TRY(db_prepare(c, sql, &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, now));
    while (*n < MNO_SWEEP_BATCH) {
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        OT_TRY(db_col_int64(st, 0, &ids[*n]));
        if (aux != NULL) {
            OT_TRY(db_col_int64(st, 1, &aux[*n]));
        }
        (*n)++;
    }
out:
    db_reset(st);
    return err;
}

static ot_err mno_sweep_leases(struct mno *m, struct db_conn *c, int64_t now)
{
    int64_t ids[MNO_SWEEP_BATCH];
    size_t n = 0;
    ot_err err = OT_OK;

    OT_TRY(mno_ids(m, c,
                   "SELECT id FROM mno_devices WHERE instance = $1 AND online = 1"
                   " AND lease_expires < $2",
                   now, ids, NULL, &n));
    for (size_t i = 0; i < n; i++) {
        OT_TRY(mno_device_offline(m, c, ids[i], "lease_expired"));
    }
out:
    return err;
}

static ot_err mno_sweep_jobs(struct mno *m, struct db_conn *c, int64_t now)
{
    int64_t ids[MNO_SWEEP_BATCH];
    int64_t aux[MNO_SWEEP_BATCH];
    size_t n = 0;
    ot_err err = OT_OK;

    /* Time-to-live: only before the session opened. */
    OT_TRY(mno_ids(m, c,
                   "SELECT id FROM mno_jobs WHERE instance = $1 AND state IN ('queued',"
                   " 'delivering') AND expires_at < $2",
                   now, ids, NULL, &n));
    for (size_t i = 0; i < n; i++) {
        err = mno_job_move(m, c, ids[i], MNO_EV_EXPIRE, "time-to-live passed");
        if (err != OT_OK && err != OT_E_STATE) {
            goto out;
        }
        err = OT_OK;
    }
    /* Delivery timeouts: another attempt after the back-off, or give up. */
    OT_TRY(mno_ids(m, c,
                   "SELECT id, CASE WHEN attempts >= max_attempts THEN 1 ELSE 0 END FROM mno_jobs"
                   " WHERE instance = $1 AND state = 'delivering' AND deliver_by < $2",
                   now, ids, aux, &n));
    for (size_t i = 0; i < n; i++) {
        err = aux[i] ? mno_job_move(m, c, ids[i], MNO_EV_GIVE_UP, "not delivered")
                     : mno_job_move(m, c, ids[i], MNO_EV_UNDELIVERED, "delivery timed out");
        if (err != OT_OK && err != OT_E_STATE) {
            goto out;
        }
        err = OT_OK;
    }
    /* Open sessions whose agent went quiet (gone with its device still
     * registered, or a POST refused that it did not repeat): interrupted,
     * as when the device goes offline. */
    OT_TRY(mno_ids(m, c,
                   "SELECT id FROM mno_jobs WHERE instance = $1 AND state = 'running'"
                   " AND session_by < $2",
                   now, ids, NULL, &n));
    for (size_t i = 0; i < n; i++) {
        err = mno_job_interrupt(m, c, ids[i], "session timed out");
        if (err != OT_OK && err != OT_E_STATE) {
            goto out;
        }
        if (err == OT_OK) {
            OT_LOG_INFO("mno %s: job %lld: session timed out", m->instance, (long long)ids[i]);
        }
        err = OT_OK;
    }
out:
    return err;
}

/* The job event that wakes job_id on its device's stream: a wake, or a
 * re-wake of a job still delivering (a re-registration). */
ot_err mno_job_wake_event(struct mno *m, struct db_conn *c, int64_t job_id, int64_t device_id)
{
    struct db_stmt *st = NULL;
    bool row = false;
    const uint8_t *cin = NULL;
    size_t cin_n = 0;
    const char *reader = NULL;
    int64_t prio = 0;
    int64_t inter = 0;
    int64_t attempt = 0;
    char hex[MNO_CIN_MAX * 2 + 1];
    char data[SVC_PREFIX_MAX + 320];
    ot_err err = OT_OK;

    data[0] = '\0';
    OT_TRY(db_prepare(c,
                      "SELECT se_cin, se_reader, priority, interactive, attempts FROM mno_jobs"
                      " WHERE id = $1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, job_id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    (void)db_col_blob(st, 0, &cin, &cin_n);
    (void)db_col_text(st, 1, &reader);
    (void)db_col_int64(st, 2, &prio);
    (void)db_col_int64(st, 3, &inter);
    (void)db_col_int64(st, 4, &attempt);
    hex[0] = '\0';
    for (size_t b = 0; cin != NULL && b < cin_n && b < MNO_CIN_MAX; b++) {
        snprintf(hex + 2 * b, 3, "%02X", cin[b]);
    }
    /* reader and hex hold only [A-Za-z0-9._-]: no JSON escapes. */
    snprintf(data, sizeof(data),
             "{\"job\":\"%lld\",\"uri\":\"%s/admin/jobs/%lld\",\"se\":{\"cin\":%s%s%s,"
             "\"reader\":%s%s%s},\"priority\":%lld,\"kind\":\"%s\",\"attempt\":%lld}",
             (long long)job_id, m->prefix, (long long)job_id, cin ? "\"" : "", cin ? hex : "null",
             cin ? "\"" : "", reader ? "\"" : "", reader ? reader : "null", reader ? "\"" : "",
             (long long)prio, inter ? "interactive" : "scripted", (long long)attempt);
    db_reset(st);
    st = NULL;
    OT_TRY(mno_event_add(m, c, device_id, "job", data));
out:
    db_reset(st);
    return err;
}

/* Wake-ups: for each online device with nothing delivering or running, its
 * best queued job (priority, then age) becomes delivering, with a job event
 * on the device's stream. The busy devices are one uncorrelated NOT IN
 * (device_id is NOT NULL): PostgreSQL hashes it once, where a NOT EXISTS,
 * planned generic while the tables were small, rescanned the instance's
 * active jobs for every queued one (36 ms a pass at 10,000 devices). */
static ot_err mno_sweep_wake(struct mno *m, struct db_conn *c, int64_t now, int64_t *woken,
                             size_t *n_woken)
{
    static const char *const sql =
        "SELECT j.id, j.device_id FROM mno_jobs j JOIN mno_devices d ON d.id = j.device_id"
        " WHERE j.instance = $1 AND j.state = 'queued' AND j.not_before <= $2"
        " AND j.expires_at >= $2 AND d.online = 1 AND d.lease_expires >= $2"
        " AND j.device_id NOT IN (SELECT k.device_id FROM mno_jobs k WHERE k.instance = $1"
        " AND k.state IN ('delivering', 'running'))"
        " ORDER BY j.priority DESC, j.id LIMIT 256";
    static const char *const sql_pg =
        "SELECT j.id, j.device_id FROM mno_jobs j JOIN mno_devices d ON d.id = j.device_id"
        " WHERE j.instance = $1 AND j.state = 'queued' AND j.not_before <= $2"
        " AND j.expires_at >= $2 AND d.online = 1 AND d.lease_expires >= $2"
        " AND j.device_id NOT IN (SELECT k.device_id FROM mno_jobs k WHERE k.instance = $1"
        " AND k.state IN ('delivering', 'running'))"
        " ORDER BY j.priority DESC, j.id LIMIT 256 FOR UPDATE OF j, d SKIP LOCKED";
    int64_t ids[MNO_SWEEP_BATCH];
    int64_t dev[MNO_SWEEP_BATCH];
    size_t n = 0;
    ot_err err = OT_OK;

    *n_woken = 0;
    OT_TRY(mno_ids(m, c, db_kind(m->db) == DB_PG ? sql_pg : sql, now, ids, dev, &n));
    for (size_t i = 0; i < n; i++) {
        bool seen = false;

        for (size_t k = 0; k < *n_woken && !seen; k++) {
            seen = woken[k] == dev[i];
        }
        if (seen) {
            continue; /* one job at a time per device */
        }
        err = mno_job_move(m, c, ids[i], MNO_EV_WAKE, NULL);
        if (err == OT_E_STATE) {
            err = OT_OK;
            continue;
        }
        OT_TRY(err);
        OT_TRY(mno_job_wake_event(m, c, ids[i], dev[i]));
        woken[(*n_woken)++] = dev[i];
    }
out:
    return err;
}

/* The wake of one device inside the caller's transaction (a job was just
 * submitted for it): its best queued job becomes delivering, with its job
 * event, when the device is online with nothing delivering or running; the
 * sweeper's wake for one device, without waiting for a pass (a transaction
 * and a commit less per job). On PostgreSQL the job's and the device's rows
 * are taken SKIP LOCKED: when another waker holds them, nothing is woken
 * here and the sweeper's pass sees to it. *woke: an event was added (push
 * after the commit; otherwise kick the sweeper). */
ot_err mno_wake_device(struct mno *m, struct db_conn *c, int64_t device_id, bool *woke)
{
    static const char *const sql =
        "SELECT j.id FROM mno_jobs j JOIN mno_devices d ON d.id = j.device_id"
        " WHERE j.instance = $1 AND j.state = 'queued' AND j.device_id = $3"
        " AND j.not_before <= $2 AND j.expires_at >= $2 AND d.online = 1"
        " AND d.lease_expires >= $2 AND NOT EXISTS (SELECT 1 FROM mno_jobs k"
        " WHERE k.instance = $1 AND k.state IN ('delivering', 'running') AND k.device_id = $3)"
        " ORDER BY j.priority DESC, j.id LIMIT 1";
    static const char *const sql_pg =
        "SELECT j.id FROM mno_jobs j JOIN mno_devices d ON d.id = j.device_id"
        " WHERE j.instance = $1 AND j.state = 'queued' AND j.device_id = $3"
        " AND j.not_before <= $2 AND j.expires_at >= $2 AND d.online = 1"
        " AND d.lease_expires >= $2 AND NOT EXISTS (SELECT 1 FROM mno_jobs k"
        " WHERE k.instance = $1 AND k.state IN ('delivering', 'running') AND k.device_id = $3)"
        " ORDER BY j.priority DESC, j.id LIMIT 1 FOR UPDATE OF j, d SKIP LOCKED";
    struct db_stmt *st = NULL;
    bool row = false;
    int64_t job_id = 0;
    ot_err err = OT_OK;

    *woke = false;
    OT_TRY(db_prepare(c, db_kind(m->db) == DB_PG ? sql_pg : sql, &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, mno_now()));
    OT_TRY(db_bind_int64(st, 3, device_id));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_int64(st, 0, &job_id));
    }
    db_reset(st);
    st = NULL;
    if (!row) {
        goto out;
    }
    OT_TRY(mno_job_move(m, c, job_id, MNO_EV_WAKE, NULL));
    OT_TRY(mno_job_wake_event(m, c, job_id, device_id));
    *woke = true;
out:
    db_reset(st);
    return err;
}

static ot_err mno_sweep_retention(struct mno *m, struct db_conn *c, int64_t now)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c, "DELETE FROM mno_events WHERE instance = $1 AND created_at < $2", &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, now - m->event_retention_s));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

struct mno_sweep_ctx {
    struct mno *m;
    int64_t now;
    int64_t woken[MNO_SWEEP_BATCH];
    size_t n_woken;
    unsigned step;
};

static ot_err mno_sweep_tx(struct db_conn *c, void *arg)
{
    struct mno_sweep_ctx *x = arg;

    switch (x->step) {
    case 0:
        return mno_sweep_leases(x->m, c, x->now);
    case 1:
        return mno_sweep_jobs(x->m, c, x->now);
    case 2:
        return mno_sweep_wake(x->m, c, x->now, x->woken, &x->n_woken);
    default:
        return mno_sweep_retention(x->m, c, x->now);
    }
}

/* The wakes of a kick that named its devices: each one's first queued job
 * (mno_wake_device, by index), in one transaction. */
struct mno_sweep_devs {
    struct mno_sweep_ctx *x;
    const int64_t *devs;
    size_t n;
};

static ot_err mno_sweep_devs_tx(struct db_conn *c, void *arg)
{
    struct mno_sweep_devs *d = arg;
    ot_err err = OT_OK;

    d->x->n_woken = 0;
    for (size_t i = 0; i < d->n; i++) {
        bool woke = false;
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++) {
            seen = d->devs[k] == d->devs[i];
        }
        if (seen || d->devs[i] <= 0) {
            continue;
        }
        OT_TRY(mno_wake_device(d->x->m, c, d->devs[i], &woke));
        if (woke && d->x->n_woken < MNO_SWEEP_BATCH) {
            d->x->woken[d->x->n_woken++] = d->devs[i];
        }
    }
out:
    return err;
}

void mno_sweep_once(struct mno *m, bool full, bool all, const int64_t *devs, size_t n_devs)
{
    struct mno_sweep_ctx x;

    memset(&x, 0, sizeof(x));
    x.m = m;
    x.now = mno_now();
    if (!full && !all) {
        struct mno_sweep_devs d = {&x, devs, n_devs};
        ot_err err = n_devs > 0 ? db_run_tx(m->db, mno_sweep_devs_tx, &d) : OT_OK;
        if (err != OT_OK && err != OT_E_CONFLICT && err != OT_E_TIMEOUT) {
            OT_LOG_WARN("mno %s: sweep wakes: %s", m->instance, ot_strerror(err));
            x.n_woken = 0;
        }
    }
    for (x.step = full ? 0 : 2; (full || all) && x.step < (full ? 4u : 3u); x.step++) {
        ot_err err = db_run_tx(m->db, mno_sweep_tx, &x);
        if (err != OT_OK && err != OT_E_CONFLICT && err != OT_E_TIMEOUT) {
            OT_LOG_WARN("mno %s: sweep step %u: %s", m->instance, x.step, ot_strerror(err));
        }
    }
    for (size_t i = 0; i < x.n_woken; i++) {
        mno_push_kick(m, x.woken[i]);
    }
}
