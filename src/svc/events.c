/* GET /admin/v1/events: the live audit stream for an operator's SIEM
 * (issue 8 point 5), over the server's SSE streams (net/http.h).
 *
 * Each subscriber is one SSE stream with the last audit seq it was sent.
 * One feeder thread per host (started with the first subscriber) reads, for
 * each subscriber, the sealed rows after its seq (audit_list, which seals
 * what is committed first) and sends each as one event: id = the row's seq,
 * event "audit", data = the row as GET /admin/v1/audit lists it. So every
 * row is sent once and in seq order; a client that reconnects with
 * Last-Event-ID = the last seq it saw gets every row after it (a new client
 * without it starts at the head: live rows only). Before each round the
 * feeder checks the subscriber's credential again (authstore_verify of the
 * bearer token, whose cache a revocation through this node flushes): a
 * revoked or expired token, or a disabled principal, ends the stream.
 *
 * The server calls on_close from its loop thread: it only flags the
 * subscriber; the feeder frees it (after releasing the stream) once flagged,
 * so the flag is never written to freed memory. */
#define OT_LOG_COMPONENT "svc.events"
#include "svc/events.h"

#include "core/buf.h"
#include "core/log.h"
#include "core/thread.h"
#include "db/audit.h"
#include "db/authstore.h"
#include "net/http.h"
#include "net/json.h"
#include "svc/admin.h"
#include "svc/kit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SVC_EVENTS_POLL_MS 100 /* the feeder's round when nothing kicks it */
/* A subscriber behind (resuming from far back) gets at most this many rows a
 * round, rounds SVC_EVENTS_CATCHUP_MS apart: its stream's buffer (the
 * server's stream_buf_max) is never asked to hold more than a reading
 * client drains meanwhile, so catching up never looks like a dead client. */
#define SVC_EVENTS_BATCH      16
#define SVC_EVENTS_CATCHUP_MS 10
#define SVC_EVENTS_MAX        256 /* open streams per host */

struct svc_events_sub {
    struct net_stream *s;
    int64_t seq;                          /* the last seq sent */
    int64_t principal_id;                 /* the subscriber */
    char bearer[AUTHSTORE_TOKEN_LEN + 1]; /* "" for a certificate */
    atomic_bool closed;                   /* on_close came */
    bool ending;                          /* net_stream_close was called */
    struct svc_events_sub *next;
};

struct svc_events {
    struct db *db;
    struct authstore *auth;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct svc_events_sub *pending; /* added by handlers, taken by the feeder */
    struct svc_events_sub *subs;    /* the feeder's own */
    unsigned count;                 /* pending + subs */
    bool kicked;
    bool stop;
    bool started;
    pthread_t th;
};

static void svc_events_sub_free(struct svc_events_sub *sub)
{
    net_stream_release(sub->s);
    ot_mem_wipe(sub->bearer, sizeof(sub->bearer));
    free(sub);
}

/* The subscriber may go on: its token still verifies (or, with a client
 * certificate, its principal is not disabled). */
static bool svc_events_allowed(struct svc_events *ev, const struct svc_events_sub *sub)
{
    struct authstore_principal p;

    if (sub->bearer[0] != '\0') {
        return authstore_verify(ev->auth, sub->bearer, &p) == OT_OK && p.id == sub->principal_id;
    }
    return authstore_get_principal(ev->auth, sub->principal_id, &p) == OT_OK && !p.disabled;
}

/* Sends up to SVC_EVENTS_BATCH rows sub has not seen yet (*behind: more
 * wait); false when the stream is gone. */
static bool svc_events_feed(struct svc_events *ev, struct svc_events_sub *sub, bool *behind)
{
    struct audit_query q;
    struct audit_entry *rows = NULL;
    size_t n = 0;
    int64_t next = 0;
    bool alive = true;

    memset(&q, 0, sizeof(q));
    q.after_seq = sub->seq;
    q.limit = SVC_EVENTS_BATCH;
    if (audit_list(ev->db, &q, &rows, &n, &next) != OT_OK) {
        return true; /* storage: try again next round */
    }
    for (size_t i = 0; i < n && alive; i++) {
        json_t *o = svc_admin_audit_json(&rows[i]);
        char *data = NULL;
        size_t len = 0;
        char id[24];
        ot_err err = OT_E_NOMEM;
        if (o != NULL && json_serialize(o, &data, &len) == OT_OK) {
            snprintf(id, sizeof(id), "%lld", (long long)rows[i].seq);
            err = net_stream_send(sub->s, id, "audit", data);
        }
        free(data);
        json_free(o);
        if (err == OT_E_NOMEM) {
            next = 0;
            break; /* this row again next round */
        }
        if (err != OT_OK) {
            alive = false; /* closed or dropped (a client that does not read) */
            break;
        }
        sub->seq = rows[i].seq;
    }
    *behind = *behind || (alive && next != 0);
    free(rows);
    return alive;
}

static void *svc_events_main(void *arg)
{
    struct svc_events *ev = arg;
    struct timespec until;
    bool behind = false;

    pthread_mutex_lock(&ev->mu);
    while (!ev->stop) {
        /* Take the new subscribers. */
        while (ev->pending != NULL) {
            struct svc_events_sub *sub = ev->pending;
            ev->pending = sub->next;
            sub->next = ev->subs;
            ev->subs = sub;
        }
        ev->kicked = false;
        behind = false;
        pthread_mutex_unlock(&ev->mu);
        for (struct svc_events_sub **pp = &ev->subs; *pp != NULL;) {
            struct svc_events_sub *sub = *pp;
            if (atomic_load(&sub->closed)) {
                *pp = sub->next;
                svc_events_sub_free(sub);
                pthread_mutex_lock(&ev->mu);
                ev->count--;
                pthread_mutex_unlock(&ev->mu);
                continue;
            }
            if (!sub->ending
                && (!svc_events_allowed(ev, sub) || !svc_events_feed(ev, sub, &behind))) {
                OT_LOG_INFO("audit stream of principal %lld ends at seq %lld",
                            (long long)sub->principal_id, (long long)sub->seq);
                sub->ending = true;
                net_stream_close(sub->s); /* on_close follows; freed then */
            }
            pp = &sub->next;
        }
        pthread_mutex_lock(&ev->mu);
        if (ev->kicked || ev->stop) {
            continue;
        }
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)(behind ? SVC_EVENTS_CATCHUP_MS : SVC_EVENTS_POLL_MS) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&ev->cv, &ev->mu, &until);
    }
    pthread_mutex_unlock(&ev->mu);
    return NULL;
}

ot_err svc_events_new(struct db *db, struct authstore *auth, struct svc_events **out)
{
    struct svc_events *ev = calloc(1, sizeof(*ev));

    *out = NULL;
    if (ev == NULL) {
        return OT_E_NOMEM;
    }
    ev->db = db;
    ev->auth = auth;
    pthread_mutex_init(&ev->mu, NULL);
    pthread_cond_init(&ev->cv, NULL);
    *out = ev;
    return OT_OK;
}

void svc_events_kick(struct svc_events *ev)
{
    if (ev == NULL) {
        return;
    }
    pthread_mutex_lock(&ev->mu);
    ev->kicked = true;
    pthread_cond_signal(&ev->cv);
    pthread_mutex_unlock(&ev->mu);
}

void svc_events_free(struct svc_events *ev)
{
    struct svc_events_sub *sub;

    if (ev == NULL) {
        return;
    }
    if (ev->started) {
        pthread_mutex_lock(&ev->mu);
        ev->stop = true;
        pthread_cond_signal(&ev->cv);
        pthread_mutex_unlock(&ev->mu);
        pthread_join(ev->th, NULL);
    }
    /* The server is gone (it stops before the host): every on_close ran. */
    while ((sub = ev->subs) != NULL) {
        ev->subs = sub->next;
        svc_events_sub_free(sub);
    }
    while ((sub = ev->pending) != NULL) {
        ev->pending = sub->next;
        svc_events_sub_free(sub);
    }
    pthread_cond_destroy(&ev->cv);
    pthread_mutex_destroy(&ev->mu);
    free(ev);
}

static void svc_events_on_close(void *ctx, struct net_stream *s)
{
    struct svc_events_sub *sub = ctx;

    (void)s;
    atomic_store(&sub->closed, true);
}

void svc_events_handle(struct svc_events *ev, struct net_req *req, struct net_resp *resp)
{
    const struct net_principal *p = net_req_principal(req);
    const char *lei = net_req_header(req, "Last-Event-ID");
    const char *authz = net_req_header(req, "Authorization");
    struct svc_events_sub *sub = NULL;
    uint8_t hash[AUDIT_HASH_LEN];
    int64_t from = 0;
    ot_err err = OT_OK;

    if (lei != NULL && strcmp(lei, "0") != 0 && !svc_id_parse(lei, &from)) {
        net_resp_error(resp, OT_E_FORMAT, NULL,
                       "Last-Event-ID must be an audit seq: a decimal integer", "Last-Event-ID");
        return;
    }
    if (lei == NULL) {
        err = audit_head(ev->db, &from, hash); /* live rows only */
        if (err != OT_OK) {
            svc_fail(resp, err);
            return;
        }
    }
    sub = calloc(1, sizeof(*sub));
    if (sub == NULL) {
        svc_fail(resp, OT_E_NOMEM);
        return;
    }
    sub->seq = from;
    sub->principal_id = p->id;
    if (authz != NULL && strncmp(authz, "Bearer ", 7) == 0
        && strlen(authz + 7) < sizeof(sub->bearer)) {
        snprintf(sub->bearer, sizeof(sub->bearer), "%s", authz + 7);
    }
    pthread_mutex_lock(&ev->mu);
    if (ev->count >= SVC_EVENTS_MAX) {
        pthread_mutex_unlock(&ev->mu);
        svc_events_sub_free(sub);
        net_resp_error(resp, OT_E_RATE_LIMITED, NULL, "too many open audit streams", NULL);
        return;
    }
    if (!ev->started) {
        if (ot_thread_start(&ev->th, svc_events_main, ev) != OT_OK) {
            pthread_mutex_unlock(&ev->mu);
            svc_events_sub_free(sub);
            svc_fail(resp, OT_E_NOMEM);
            return;
        }
        ev->started = true;
    }
    sub->s = net_resp_sse(resp, svc_events_on_close, sub);
    if (sub->s == NULL) {
        pthread_mutex_unlock(&ev->mu);
        svc_events_sub_free(sub);
        return; /* answered 503 */
    }
    ev->count++;
    sub->next = ev->pending;
    ev->pending = sub;
    ev->kicked = true;
    pthread_cond_signal(&ev->cv);
    pthread_mutex_unlock(&ev->mu);
    OT_LOG_INFO("req_id=%s audit stream of principal %lld from seq %lld", net_req_request_id(req),
                (long long)p->id, (long long)from);
}
