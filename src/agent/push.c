/* The push client (agent/push.h). */
#define OT_LOG_COMPONENT "agent.push"
#include "agent/push.h"

#include "agent/agent_priv.h"
#include "core/hex.h"
#include "core/log.h"
#include "core/thread.h"
#include "net/json.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PUSH_BACKOFF_MIN_MS 500u
#define PUSH_BACKOFF_MAX_MS 60000u
#define PUSH_IDLE_S         45u /* three missed 15 s heartbeats */
#define PUSH_EVENT_MAX      4096u

struct agent_push {
    char url[512];
    char token[4096];
    char ca[512];
    char cert[512], key[512]; /* the client certificate and its key, "" when none */
    char la[64];
    bool has_ca, has_la;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;                   /* an event was queued */
    pthread_cond_t news;                 /* a batch or cancel event came (news_job) */
    char news_job[AGENT_JOB_ID_MAX + 1]; /* "" : none not taken */
    atomic_int stop;
    bool got_event;
    size_t head, n;
    struct agent_push_event q[AGENT_PUSH_QUEUE];
    char last_id[NET_SSE_ID_MAX + 1];
    char state[512]; /* "" : the last id is not kept */
};

#define PUSH_ID_FILE "push_last_id"

/* The last event id survives a restart (STATE/push_last_id), so the stream
 * resumes after it: a wake-up sent at registration, before the stream was
 * open, is not lost. None yet: "0", every retained event of the device. */
static void id_load(struct agent_push *p)
{
    char path[600];
    FILE *f;
    size_t n = 0;

    (void)snprintf(p->last_id, sizeof p->last_id, "0");
    if (p->state[0] == '\0'
        || snprintf(path, sizeof path, "%s/%s", p->state, PUSH_ID_FILE) >= (int)sizeof path) {
        return;
    }
    f = fopen(path, "r");
    if (f != NULL) {
        n = fread(p->last_id, 1, sizeof p->last_id - 1, f);
        fclose(f);
        p->last_id[n] = '\0';
        while (n > 0 && (p->last_id[n - 1] == '\n')) {
            p->last_id[--n] = '\0';
        }
        if (n == 0 || strspn(p->last_id, "0123456789") != n) {
            (void)snprintf(p->last_id, sizeof p->last_id, "0");
        }
    }
}

static bool copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src == NULL ? 0 : strlen(src);

    if (src == NULL || n >= cap) {
        return false;
    }
    memcpy(dst, src, n + 1);
    return true;
}

/* se: {"cin": hex|null, "reader": name|null} into a reader name or CIN hex. */
static bool parse_se(const json_t *o, char *out, size_t cap, struct agent_admin_job *job,
                     struct json_err *je)
{
    const json_t *se = NULL;
    const char *reader = NULL;
    const char *cin = NULL;

    out[0] = '\0';
    if (json_opt_obj(o, "se", &se, je) != OT_OK) {
        return false;
    }
    if (se == NULL) {
        return true;
    }
    if (json_opt_str(se, "reader", 1, AGENT_READER_NAME_MAX, &reader, je) != OT_OK
        || json_opt_str(se, "cin", 2, 2 * AGENT_CIN_MAX, &cin, je) != OT_OK) {
        return false;
    }
    if (reader != NULL) {
        if (!agent_reader_name_ok(reader) || !copy_str(out, cap, reader)) {
            return false;
        }
        if (job != NULL) {
            (void)copy_str(job->reader, sizeof job->reader, reader);
        }
        return true;
    }
    if (cin != NULL) {
        size_t n = AGENT_CIN_MAX;
        uint8_t b[AGENT_CIN_MAX];
        if (hex_decode(cin, strlen(cin), b, &n) != OT_OK || !copy_str(out, cap, cin)) {
            return false;
        }
        if (job != NULL) {
            memcpy(job->cin, b, n);
            job->cin_len = n;
        }
    }
    return true;
}

bool agent_push_parse(const char *event, const char *data, struct agent_push_event *ev)
{
    static const char *const ops[] = {"add", "verify", "query", "delete"};
    struct json_err je;
    json_t *o = NULL;
    const char *id = NULL;
    size_t op = 0;
    bool ok = false;

    memset(ev, 0, sizeof *ev);
    memset(&je, 0, sizeof je);
    if (event == NULL || data == NULL
        || (strcmp(event, "job") != 0 && strcmp(event, "backstage") != 0)) {
        return false;
    }
    if (json_parse(data, strlen(data), PUSH_EVENT_MAX, &o, &je) != OT_OK || !json_is_obj(o)) {
        goto out;
    }
    if (strcmp(event, "job") == 0) {
        ev->kind = AGENT_PUSH_JOB;
        ok = json_get_str(o, "job", 1, AGENT_JOB_ID_MAX, &id, &je) == OT_OK
             && strspn(id, "0123456789") == strlen(id)
             && copy_str(ev->job.job, sizeof ev->job.job, id)
             && parse_se(o, ev->se, sizeof ev->se, &ev->job, &je) && ev->se[0] != '\0'
             && json_opt_int(o, "attempt", 1, INT32_MAX, 0, &ev->attempt, &je) == OT_OK;
    } else {
        ev->kind = AGENT_PUSH_BACKSTAGE;
        ok = json_get_str(o, "request", 1, AGENT_JOB_ID_MAX, &id, &je) == OT_OK
             && strspn(id, "0123456789") == strlen(id)
             && copy_str(ev->request, sizeof ev->request, id)
             && json_get_enum(o, "op", ops, 4, &op, &je) == OT_OK
             && copy_str(ev->op, sizeof ev->op, ops[op])
             && parse_se(o, ev->se, sizeof ev->se, NULL, &je);
    }
out:
    if (!ok) {
        OT_LOG_WARN("event=bad_push_event type=%s field=%s reason=\"%s\"", event, je.field,
                    je.message);
    }
    json_free(o);
    return ok;
}

bool agent_push_news(const char *event, const char *data, char *job, size_t cap)
{
    struct json_err je;
    json_t *o = NULL;
    const char *id = NULL;
    bool ok = false;

    memset(&je, 0, sizeof je);
    if (event == NULL || data == NULL || cap == 0
        || (strcmp(event, "batch") != 0 && strcmp(event, "cancel") != 0)) {
        return false;
    }
    if (json_parse(data, strlen(data), PUSH_EVENT_MAX, &o, &je) == OT_OK && json_is_obj(o)
        && json_get_str(o, "job", 1, AGENT_JOB_ID_MAX, &id, &je) == OT_OK
        && strspn(id, "0123456789") == strlen(id) && strlen(id) < cap) {
        memcpy(job, id, strlen(id) + 1);
        ok = true;
    }
    json_free(o);
    return ok;
}

static bool on_event(void *ctx, const char *id, const char *event, const char *data)
{
    struct agent_push *p = ctx;
    struct agent_push_event ev;
    char job[AGENT_JOB_ID_MAX + 1];

    if (p->stop) {
        return false;
    }
    if (id != NULL && p->state[0] != '\0' && strlen(id) < sizeof p->last_id
        && strspn(id, "0123456789") == strlen(id)) {
        (void)snprintf(p->last_id, sizeof p->last_id, "%s", id);
        (void)agent_file_write_cached(p->state, PUSH_ID_FILE, id, strlen(id));
    }
    p->got_event = true;
    if (agent_push_news(event, data, job, sizeof job)) {
        /* A session waiting after a 202 goes on now (agent_push_wait_job). */
        pthread_mutex_lock(&p->mu);
        memcpy(p->news_job, job, sizeof job);
        pthread_cond_broadcast(&p->news);
        pthread_mutex_unlock(&p->mu);
        OT_LOG_INFO("event=push type=%s job=%s", event, job);
        return !p->stop;
    }
    if (!agent_push_parse(event, data, &ev)) {
        return true; /* batch, cancel, or a bad one: nothing to queue */
    }
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; ev.kind == AGENT_PUSH_JOB && i < p->n; i++) {
        struct agent_push_event *q = &p->q[(p->head + i) % AGENT_PUSH_QUEUE];
        if (q->kind == AGENT_PUSH_JOB && strcmp(q->job.job, ev.job.job) == 0) {
            /* A re-wake (ota.md 4: a re-registration sends the job event
             * again) of a job still waiting here: one session is enough.
             * A later attempt takes the waiting event's place (the waiting
             * one may repeat a session that has ended since). */
            if (ev.attempt > q->attempt) {
                *q = ev;
            }
            pthread_mutex_unlock(&p->mu);
            OT_LOG_INFO("event=push_duplicate type=job job=%s", ev.job.job);
            return !p->stop;
        }
    }
    if (p->n < AGENT_PUSH_QUEUE) {
        p->q[(p->head + p->n) % AGENT_PUSH_QUEUE] = ev;
        p->n++;
        pthread_cond_signal(&p->cv);
    } else {
        /* Waking is never a promise (ota.md 4): a dropped job event comes
         * back at the next registration. */
        OT_LOG_WARN("event=push_queue_full dropped=%s", event);
    }
    pthread_mutex_unlock(&p->mu);
    OT_LOG_INFO("event=push type=%s", event);
    return !p->stop;
}

static void nap_ms(struct agent_push *p, unsigned ms)
{
    struct timespec ts = {0, 100000000L};

    while (ms > 0 && !p->stop) {
        unsigned step = ms > 100 ? 100 : ms;
        ts.tv_nsec = (long)step * 1000000L;
        (void)nanosleep(&ts, NULL);
        ms -= step;
    }
}

static void *push_main(void *arg)
{
    struct agent_push *p = arg;
    struct agent_mno_cfg mc = {
        p->url, p->token[0] != '\0' ? p->token : NULL, p->has_ca ? p->ca : NULL,
        0,      p->cert[0] != '\0' ? p->cert : NULL,   p->key[0] != '\0' ? p->key : NULL,
        NULL};
    struct net_sse_opts so = {1000, 1, PUSH_IDLE_S};
    struct agent_mno *m = NULL;
    char why[256];
    unsigned wait = 0;
    uint32_t seed = (uint32_t)time(NULL) ^ (uint32_t)(uintptr_t)p;
    int hb = 0, lease = 0;
    ot_err err;

    if (agent_mno_new(&mc, &m) != OT_OK) {
        OT_LOG_ERROR("event=push_failed reason=\"no mno client\"");
        return NULL;
    }
    while (!p->stop) {
        /* Registered first, then the stream (ota.md 4: 409 otherwise). */
        err = agent_mno_register(m, p->has_la ? p->la : NULL, &hb, &lease, why, sizeof why);
        if (err == OT_OK) {
            p->got_event = false;
            OT_LOG_INFO("event=stream_open last_id=%s", p->last_id);
            err = agent_mno_stream(m, p->last_id, &so, on_event, p, p->last_id, sizeof p->last_id);
            (void)snprintf(why, sizeof why, "%s", ot_strerror(err));
            if (p->got_event) {
                wait = 0; /* it worked for a while: start the backoff over */
            }
        }
        if (p->stop) {
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        wait = agent_backoff_next(wait, PUSH_BACKOFF_MIN_MS, PUSH_BACKOFF_MAX_MS, seed);
        OT_LOG_WARN("event=stream_lost reason=\"%s\" reconnect_ms=%u", why, wait);
        nap_ms(p, wait);
    }
    agent_mno_free(m);
    return NULL;
}

ot_err agent_push_start(const struct agent_mno_cfg *cfg, const char *location_area,
                        const char *state_dir, struct agent_push **out)
{
    struct agent_push *p;

    if (out == NULL || cfg == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    p = calloc(1, sizeof *p);
    if (p == NULL) {
        return OT_E_NOMEM;
    }
    if (!copy_str(p->url, sizeof p->url, cfg->base_url)
        || (cfg->token != NULL && !copy_str(p->token, sizeof p->token, cfg->token))
        || (cfg->cert_file != NULL && !copy_str(p->cert, sizeof p->cert, cfg->cert_file))
        || (cfg->key_file != NULL && !copy_str(p->key, sizeof p->key, cfg->key_file))
        || (cfg->ca_file != NULL && !copy_str(p->ca, sizeof p->ca, cfg->ca_file))
        || (location_area != NULL && !copy_str(p->la, sizeof p->la, location_area))) {
        free(p);
        return OT_E_TOO_LONG;
    }
    if (state_dir != NULL && !copy_str(p->state, sizeof p->state, state_dir)) {
        free(p);
        return OT_E_TOO_LONG;
    }
    id_load(p);
    p->has_ca = cfg->ca_file != NULL;
    p->has_la = location_area != NULL;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return OT_E_NOMEM;
    }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return OT_E_NOMEM;
    }
    if (pthread_cond_init(&p->news, NULL) != 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return OT_E_NOMEM;
    }
    if (ot_thread_start(&p->th, push_main, p) != OT_OK) {
        pthread_cond_destroy(&p->news);
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return OT_E_NOMEM;
    }
    (void)pthread_detach(p->th);
    *out = p;
    return OT_OK;
}

bool agent_push_next(struct agent_push *p, struct agent_push_event *ev)
{
    bool got = false;

    if (p == NULL) {
        return false;
    }
    pthread_mutex_lock(&p->mu);
    if (p->n > 0) {
        *ev = p->q[p->head];
        p->head = (p->head + 1) % AGENT_PUSH_QUEUE;
        p->n--;
        got = true;
    }
    pthread_mutex_unlock(&p->mu);
    return got;
}

void agent_push_wait(struct agent_push *p, int ms)
{
    struct timespec until;

    if (p == NULL || ms <= 0) {
        return;
    }
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    if (p->n == 0) {
        (void)pthread_cond_timedwait(&p->cv, &p->mu, &until);
    }
    pthread_mutex_unlock(&p->mu);
}

bool agent_push_wait_job(struct agent_push *p, const char *job, int ms)
{
    struct timespec until;
    bool got = false;
    int rc = 0;

    if (p == NULL || job == NULL) {
        return false;
    }
    clock_gettime(CLOCK_REALTIME, &until);
    if (ms > 0) {
        until.tv_sec += ms / 1000;
        until.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&p->mu);
    for (;;) {
        got = strcmp(p->news_job, job) == 0;
        if (got || rc == ETIMEDOUT || atomic_load(&p->stop)) {
            break;
        }
        rc = pthread_cond_timedwait(&p->news, &p->mu, &until);
    }
    if (got) {
        p->news_job[0] = '\0';
    }
    pthread_mutex_unlock(&p->mu);
    return got;
}

bool agent_push_waiter(void *ctx, const char *job, int seconds)
{
    return agent_push_wait_job(ctx, job, seconds > 0 ? seconds * 1000 : 0);
}

void agent_push_stop(struct agent_push *p)
{
    if (p != NULL) {
        atomic_store(&p->stop, 1);
    }
}
