/* mno push: one SSE stream per online device (docs/ota.md §4). Events are
 * rows of mno_events first; a stream is sent the rows after the last id it
 * got, by whichever thread learns of new rows: the handler or the sweeper
 * that committed them (this node), or the listener of the PostgreSQL
 * channel MNO_CHANNEL, on which the writer sends a notice after its commit
 * when it does not hold the device's stream itself (mno_push_kick). So a
 * job submitted to one node reaches the device whose stream another node
 * holds. A device holds one stream: the newest, on any node (a stream-open
 * notice ends the older one elsewhere).
 *
 * The table of local streams is a hash by device id under one short lock;
 * each entry has its own lock, held while its rows are read and sent, so
 * two pushes to one stream never interleave. on_close (the server's loop
 * thread) only unlinks the entry. */
#define OT_LOG_COMPONENT "mno"
#include "core/buf.h"
#include "core/log.h"
#include "db/authstore.h"
#include "db/db.h"
#include "mno/mno_priv.h"
#include "svc/kit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define MNO_PUSH_BATCH 64

struct mno_push_entry {
    struct mno_push_entry *next; /* bucket chain (under push_mu) */
    struct mno *m;
    int64_t device_id;
    struct net_stream *s;
    pthread_mutex_t mu; /* held while rows are read and sent */
    int64_t last_sent;
    atomic_int refs; /* the table's, the stream's and each pusher's */
    bool linked;     /* in the table (under push_mu) */
    /* The credential that opened the stream, checked again whenever one
     * may have been revoked (mno_push_recheck). */
    struct mno_cred cred;
};

static void mno_entry_unref(struct mno_push_entry *e)
{
    if (e != NULL && atomic_fetch_sub(&e->refs, 1) == 1) {
        net_stream_release(e->s);
        pthread_mutex_destroy(&e->mu);
        mno_cred_clear(&e->cred);
        free(e);
    }
}

static size_t mno_bucket(int64_t device_id)
{
    return (size_t)((uint64_t)device_id * 0x9E3779B97F4A7C15ull >> 52) % MNO_PUSH_BUCKETS;
}

/* Unlinks e when linked (caller holds push_mu); true when it did. */
static bool mno_unlink(struct mno *m, struct mno_push_entry *e)
{
    struct mno_push_entry **pp = &m->push[mno_bucket(e->device_id)];

    if (!e->linked) {
        return false;
    }
    for (; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            e->linked = false;
            m->push_n--;
            return true;
        }
    }
    return false;
}

static void mno_stream_closed(void *ctx, struct net_stream *s)
{
    struct mno_push_entry *e = ctx;
    struct mno *m = e->m;
    bool was;

    (void)s;
    pthread_mutex_lock(&m->push_mu);
    was = mno_unlink(m, e);
    pthread_mutex_unlock(&m->push_mu);
    if (was) {
        mno_entry_unref(e); /* the table's */
    }
    mno_entry_unref(e); /* the stream's */
}

/* Sends e the rows after its last id (caller holds e->mu). */
static ot_err mno_push_rows(struct mno *m, struct mno_push_entry *e)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_acquire(m->db, &c));
    for (;;) {
        size_t n = 0;
        OT_TRY(db_prepare(c,
                          "SELECT id, kind, data FROM mno_events WHERE instance = $1"
                          " AND device_id = $2 AND id > $3 ORDER BY id LIMIT $4",
                          &st));
        OT_TRY(db_bind_text(st, 1, m->instance));
        OT_TRY(db_bind_int64(st, 2, e->device_id));
        OT_TRY(db_bind_int64(st, 3, e->last_sent));
        OT_TRY(db_bind_int64(st, 4, MNO_PUSH_BATCH));
        for (;;) {
            int64_t id = 0;
            const char *kind = NULL;
            const char *data = NULL;
            char ids[24];
            OT_TRY(db_step(st, &row));
            if (!row) {
                break;
            }
            OT_TRY(db_col_int64(st, 0, &id));
            OT_TRY(db_col_text(st, 1, &kind));
            OT_TRY(db_col_text(st, 2, &data));
            snprintf(ids, sizeof(ids), "%lld", (long long)id);
            err = net_stream_send(e->s, ids, kind, data);
            if (err != OT_OK) {
                goto out; /* closed or dropped: on_close unlinks it */
            }
            e->last_sent = id;
            n++;
        }
        db_reset(st);
        st = NULL;
        if (n < MNO_PUSH_BATCH) {
            break;
        }
    }
out:
    db_reset(st);
    db_release(c);
    return err;
}

bool mno_push_local(struct mno *m, int64_t device_id)
{
    struct mno_push_entry *e;

    pthread_mutex_lock(&m->push_mu);
    for (e = m->push[mno_bucket(device_id)]; e != NULL && e->device_id != device_id; e = e->next) {
    }
    if (e != NULL) {
        atomic_fetch_add(&e->refs, 1);
    }
    pthread_mutex_unlock(&m->push_mu);
    if (e == NULL) {
        return false;
    }
    pthread_mutex_lock(&e->mu);
    ot_err err = mno_push_rows(m, e);
    pthread_mutex_unlock(&e->mu);
    if (err != OT_OK && err != OT_E_CLOSED) {
        OT_LOG_DEBUG("mno %s: push to device %lld: %s", m->instance, (long long)device_id,
                     ot_strerror(err));
    }
    mno_entry_unref(e);
    return true;
}

/* PostgreSQL: a notice on MNO_CHANNEL (sent after commit by the listener's
 * connection, batched, not durable: db_listener_notify). */
static void mno_note_send(struct mno *m, const char *note)
{
    if (db_listener_notify(m->listener, note) != OT_OK) {
        atomic_fetch_add(&m->m_notes_dropped, 1);
    }
}

void mno_push_kick(struct mno *m, int64_t device_id)
{
    char note[SVC_NAME_MAX + 32];

    /* A device holds one stream (the newest wins, on every node: see
     * mno_h_stream). Held here: pushed now, no other node is told. Else the
     * node holding it is told by a notice, once the rows are committed. A
     * notice lost with this process costs a delay, not the job: the device
     * reads its backlog whenever its stream opens again, and a wake whose
     * session did not open within deliver_timeout_s is woken again. */
    if (mno_push_local(m, device_id) || m->listener == NULL) {
        return;
    }
    (void)snprintf(note, sizeof(note), "%s:%lld", m->instance, (long long)device_id);
    mno_note_send(m, note);
}

void mno_push_kick_held(struct mno *m, int64_t device_id)
{
    char note[SVC_NAME_MAX + 32];

    (void)mno_push_local(m, device_id);
    if (m->listener != NULL) {
        (void)snprintf(note, sizeof(note), "%s:%lld", m->instance, (long long)device_id);
        mno_note_send(m, note);
    }
}

unsigned mno_push_count(struct mno *m)
{
    unsigned n;

    pthread_mutex_lock(&m->push_mu);
    n = m->push_n;
    pthread_mutex_unlock(&m->push_mu);
    return n;
}

/* Makes the sweeper check the streams again at expires_at (0: never). */
static void mno_push_due(struct mno *m, int64_t expires_at)
{
    if (expires_at == 0) {
        return;
    }
    pthread_mutex_lock(&m->push_mu);
    if (m->push_next_exp == 0 || expires_at < m->push_next_exp) {
        m->push_next_exp = expires_at;
    }
    pthread_mutex_unlock(&m->push_mu);
}

/* GET /device/stream: the device's push stream (Last-Event-ID resumes). */
void mno_h_stream(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct mno *m = ctx;
    const char *last = net_req_header(req, "Last-Event-ID");
    struct db_conn *c = NULL;
    struct mno_device d;
    struct mno_push_entry *e = NULL;
    struct mno_push_entry *old = NULL;
    struct mno_push_entry **pp;
    int64_t last_id = 0;
    ot_err err = OT_OK;

    if (last != NULL && strcmp(last, "0") != 0 && !svc_id_parse(last, &last_id)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "an event id (decimal)", "Last-Event-ID");
        return;
    }
    OT_TRY(db_acquire(m->db, &c));
    err = mno_device_of_caller(m, c, req, &d);
    db_release(c);
    c = NULL;
    if (err == OT_E_NOT_FOUND) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "this device is not enrolled here", NULL);
        return;
    }
    OT_TRY(err);
    if (!d.online || d.lease_expires < mno_now()) {
        net_resp_error(resp, OT_E_CONFLICT, "not_registered",
                       "the device is offline: register first", NULL);
        return;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    e->m = m;
    e->device_id = d.id;
    err = mno_cred_take(m, req, d.principal_id, &e->cred);
    if (err != OT_OK) {
        free(e);
        e = NULL;
        OT_FAIL(err);
    }
    pthread_mutex_init(&e->mu, NULL);
    atomic_init(&e->refs, 3); /* the table's, the stream's (on_close) and ours */
    if (last == NULL) {
        /* No backlog: a new stream starts after the newest event. */
        struct db_stmt *st = NULL;
        bool row = false;
        OT_TRY(db_acquire(m->db, &c));
        err = db_prepare(c,
                         "SELECT COALESCE(MAX(id), 0) FROM mno_events WHERE instance = $1"
                         " AND device_id = $2",
                         &st);
        if (err == OT_OK) {
            err = db_bind_text(st, 1, m->instance);
        }
        if (err == OT_OK) {
            err = db_bind_int64(st, 2, d.id);
        }
        if (err == OT_OK) {
            err = db_step(st, &row);
        }
        if (err == OT_OK && row) {
            err = db_col_int64(st, 0, &last_id);
        }
        db_reset(st);
        db_release(c);
        c = NULL;
        OT_TRY(err);
    }
    e->last_sent = last_id;
    e->s = net_resp_sse(resp, mno_stream_closed, e);
    if (e->s == NULL) {
        pthread_mutex_destroy(&e->mu);
        mno_cred_clear(&e->cred);
        free(e);
        return; /* answered 503 */
    }
    /* The newest connection wins: the older stream of the device ends. */
    pthread_mutex_lock(&m->push_mu);
    pp = &m->push[mno_bucket(d.id)];
    for (old = *pp; old != NULL && old->device_id != d.id; old = old->next) {
    }
    if (old != NULL && mno_unlink(m, old)) {
        /* keep the table's reference until the close below */
    } else {
        old = NULL;
    }
    e->next = *pp;
    *pp = e;
    e->linked = true;
    m->push_n++;
    pthread_mutex_unlock(&m->push_mu);
    mno_push_due(m, e->cred.expires_at);
    if (old != NULL) {
        net_stream_close(old->s);
        mno_entry_unref(old);
    }
    if (m->listener != NULL) {
        /* The other nodes end an older stream of this device (one left
         * half-open by a phone that moved would take the wake-ups that
         * mno_push_kick sends no notice for). */
        char note[SVC_NAME_MAX + 64];
        (void)snprintf(note, sizeof(note), "%s:%lld:open:%s", m->instance, (long long)d.id,
                       m->node_tag);
        mno_note_send(m, note);
    }
    /* The backlog after Last-Event-ID, then whatever came meanwhile. */
    pthread_mutex_lock(&e->mu);
    (void)mno_push_rows(m, e);
    pthread_mutex_unlock(&e->mu);
    mno_entry_unref(e);
    return;
out:
    db_release(c);
    if (e != NULL) {
        pthread_mutex_destroy(&e->mu);
        mno_cred_clear(&e->cred);
        free(e);
    }
    svc_fail(resp, err);
}

ot_err mno_cred_take(struct mno *m, struct net_req *req, int64_t principal_id, struct mno_cred *cr)
{
    memset(cr, 0, sizeof(*cr));
    cr->principal_id = principal_id;
    if (net_req_token(req) != NULL) {
        struct authstore_principal p;
        /* Just verified by the server: a cache hit. */
        ot_err err = authstore_verify_exp(m->auth, net_req_token(req), &p, &cr->expires_at);
        if (err == OT_OK && p.id != principal_id) {
            err = OT_E_AUTH;
        }
        if (err != OT_OK) {
            return err;
        }
        snprintf(cr->bearer, sizeof(cr->bearer), "%s", net_req_token(req));
    } else if (net_req_cert_subject(req) != NULL) {
        cr->subject = strdup(net_req_cert_subject(req));
        if (cr->subject == NULL) {
            return OT_E_NOMEM;
        }
    }
    return OT_OK;
}

void mno_cred_clear(struct mno_cred *cr)
{
    ot_mem_wipe(cr->bearer, sizeof(cr->bearer));
    free(cr->subject);
    cr->subject = NULL;
}

bool mno_cred_ok(struct mno *m, const struct mno_cred *cr, int64_t now, bool *retry)
{
    struct authstore_principal p;
    int64_t exp = 0;
    ot_err err;

    if (cr->bearer[0] != '\0') {
        if (cr->expires_at != 0 && cr->expires_at <= now) {
            return false;
        }
        err = authstore_verify_exp(m->auth, cr->bearer, &p, &exp);
        if (err == OT_OK) {
            return p.id == cr->principal_id;
        }
    } else if (cr->subject != NULL) {
        /* Unbound (a stolen phone's certificate withdrawn), bound to
         * another principal since, or its principal disabled: refused. */
        err = authstore_verify_cert(m->auth, cr->subject, &p);
        if (err == OT_OK) {
            return p.id == cr->principal_id && !p.disabled;
        }
    } else {
        err = authstore_get_principal(m->auth, cr->principal_id, &p);
        if (err == OT_OK) {
            return !p.disabled;
        }
        if (err == OT_E_NOT_FOUND) {
            return false;
        }
    }
    if (err == OT_E_AUTH) {
        return false;
    }
    *retry = true;
    return true;
}

void mno_push_recheck(struct mno *m)
{
    int64_t gen = authstore_generation(m->auth);
    int64_t now = mno_now();
    struct mno_push_entry **list = NULL;
    size_t n = 0;
    size_t cap = 0;
    bool retry = false;
    size_t closed = 0;

    pthread_mutex_lock(&m->push_mu);
    /* Nothing revoked and no token due: nothing to check. */
    if (gen == m->push_auth_gen && (m->push_next_exp == 0 || now < m->push_next_exp)) {
        pthread_mutex_unlock(&m->push_mu);
        return;
    }
    m->push_next_exp = 0;
    cap = m->push_n;
    list = cap > 0 ? calloc(cap, sizeof(*list)) : NULL;
    if (cap > 0 && list == NULL) {
        pthread_mutex_unlock(&m->push_mu);
        return; /* next pass */
    }
    for (size_t b = 0; b < MNO_PUSH_BUCKETS && n < cap; b++) {
        for (struct mno_push_entry *e = m->push[b]; e != NULL && n < cap; e = e->next) {
            atomic_fetch_add(&e->refs, 1);
            list[n++] = e;
        }
    }
    pthread_mutex_unlock(&m->push_mu);
    for (size_t i = 0; i < n; i++) {
        struct mno_push_entry *e = list[i];
        if (!mno_cred_ok(m, &e->cred, now, &retry)) {
            bool was;
            pthread_mutex_lock(&m->push_mu);
            was = mno_unlink(m, e);
            pthread_mutex_unlock(&m->push_mu);
            if (was) {
                OT_LOG_INFO("mno %s: device %lld's stream closed: its credential is no longer"
                            " valid",
                            m->instance, (long long)e->device_id);
                net_stream_close(e->s);
                mno_entry_unref(e); /* the table's */
                closed++;
            }
        } else {
            mno_push_due(m, e->cred.expires_at);
        }
        mno_entry_unref(e);
    }
    free(list);
    if (!retry) {
        pthread_mutex_lock(&m->push_mu);
        m->push_auth_gen = gen;
        pthread_mutex_unlock(&m->push_mu);
    }
    if (closed > 0) {
        atomic_fetch_add(&m->m_streams_revoked, closed);
    }
}

static void mno_push_end_local(struct mno *m, int64_t device_id);

/* PostgreSQL notices: "<instance>:<device id>", new event rows for the
 * device; "<instance>:<device id>:open:<node tag>", the device opened a
 * stream on that node. */
static void mno_on_note(void *ctx, enum db_note what, const char *payload)
{
    struct mno *m = ctx;
    size_t il = strlen(m->instance);
    const char *open_by = NULL;
    int64_t dev = 0;

    if (what == DB_NOTE_UP) {
        /* Notices may have been missed: every local stream catches up. */
        int64_t ids[256];
        size_t n = 0;
        pthread_mutex_lock(&m->push_mu);
        for (size_t b = 0; b < MNO_PUSH_BUCKETS && n < 256; b++) {
            for (struct mno_push_entry *e = m->push[b]; e != NULL && n < 256; e = e->next) {
                ids[n++] = e->device_id;
            }
        }
        pthread_mutex_unlock(&m->push_mu);
        for (size_t i = 0; i < n; i++) {
            mno_push_local(m, ids[i]);
        }
        return;
    }
    if (what != DB_NOTE_MSG || payload == NULL || strncmp(payload, m->instance, il) != 0
        || payload[il] != ':') {
        return;
    }
    payload += il + 1;
    if (payload[0] == 'j') {
        /* A job moved on another node: a long-poll here waiting for it is
         * answered now. */
        int64_t job = 0;
        if (svc_id_parse(payload + 1, &job) && mno_waiting_on(m, job)) {
            mno_sweep_kick_dev(m, 0);
        }
        return;
    }
    open_by = strstr(payload, ":open:");
    if (open_by != NULL) {
        char id[24];
        size_t n = (size_t)(open_by - payload);
        if (n == 0 || n >= sizeof(id)) {
            return;
        }
        memcpy(id, payload, n);
        id[n] = '\0';
        if (svc_id_parse(id, &dev) && strcmp(open_by + 6, m->node_tag) != 0) {
            mno_push_end_local(m, dev);
        }
        return;
    }
    if (!svc_id_parse(payload, &dev)) {
        return;
    }
    (void)mno_push_local(m, dev);
    if (mno_held_touch(m, 0, dev)) {
        mno_sweep_kick_dev(m, 0); /* its next batch may be there */
    }
}

ot_err mno_job_note(struct mno *m, struct db_conn *c, int64_t job_id)
{
    struct db_stmt *st = NULL;
    char payload[SVC_NAME_MAX + 32];
    bool row = false;
    ot_err err = OT_OK;

    if (db_kind(m->db) != DB_PG) {
        return OT_OK;
    }
    (void)snprintf(payload, sizeof(payload), "%s:j%lld", m->instance, (long long)job_id);
    OT_TRY(db_prepare(c, "SELECT pg_notify('" MNO_CHANNEL "', $1)", &st));
    OT_TRY(db_bind_text(st, 1, payload));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

/* Another node opened a stream for device_id: this node's ends. */
static void mno_push_end_local(struct mno *m, int64_t device_id)
{
    struct mno_push_entry *e;
    bool was = false;

    pthread_mutex_lock(&m->push_mu);
    for (e = m->push[mno_bucket(device_id)]; e != NULL && e->device_id != device_id; e = e->next) {
    }
    if (e != NULL) {
        was = mno_unlink(m, e);
    }
    pthread_mutex_unlock(&m->push_mu);
    if (was) {
        OT_LOG_INFO("mno %s: device %lld opened a stream on another node: this one ends",
                    m->instance, (long long)device_id);
        net_stream_close(e->s);
        mno_entry_unref(e); /* the table's */
    }
}

ot_err mno_push_start(struct mno *m)
{
    uint8_t r[8];

    pthread_mutex_init(&m->push_mu, NULL);
    if (db_kind(m->db) != DB_PG) {
        return OT_OK;
    }
    /* This node's name in stream-open notices: its own notices come back. */
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        return OT_E_IO;
    }
    for (size_t i = 0; i < sizeof(r); i++) {
        (void)snprintf(m->node_tag + 2 * i, 3, "%02x", r[i]);
    }
    return db_listen(m->db, MNO_CHANNEL, mno_on_note, m, &m->listener);
}

void mno_push_stop(struct mno *m)
{
    db_listener_free(m->listener);
    m->listener = NULL;
    pthread_mutex_lock(&m->push_mu);
    for (size_t b = 0; b < MNO_PUSH_BUCKETS; b++) {
        while (m->push[b] != NULL) {
            struct mno_push_entry *e = m->push[b];
            (void)mno_unlink(m, e);
            net_stream_close(e->s);
            mno_entry_unref(e);
        }
    }
    pthread_mutex_unlock(&m->push_mu);
    pthread_mutex_destroy(&m->push_mu);
}
