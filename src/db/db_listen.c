/* Change notifications over PostgreSQL LISTEN/NOTIFY (see db.h). One
 * connection per listener, outside the pool, watched by its own thread with
 * poll(): the libpq socket, a pipe that db_listener_free writes to and one
 * that db_listener_notify writes to (the thread sends the queued notices on
 * the same connection, DBL_SEND_BATCH a transaction). */
#include "db/db.h"

#define OT_LOG_COMPONENT "db.listen"
#include "core/buf.h"
#include "core/log.h"
#include "core/thread.h"
#include "db/db_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DBL_CHANNEL_MAX         63u /* NAMEDATALEN - 1 */
#define DBL_BACKOFF_MIN         50  /* ms */
#define DBL_BACKOFF_MAX         5000
#define DBL_LISTEN_PREFIX       "LISTEN "
#define DBL_HEARTBEAT_MS        10000 /* idle this long: ask the server something */
#define DBL_CONNECT_TIMEOUT_S   "5"
#define DBL_TCP_USER_TIMEOUT_MS "30000"
#define DBL_SEND_BATCH          512 /* notices per transaction */

struct db_listener {
    char *target; /* libpq conninfo (copied: the listener may outlive nothing, but owns its copy) */
    char channel[DBL_CHANNEL_MAX + 1];
    db_notify_fn fn;
    void *ctx;
    int stop_pipe[2];
    int wake_pipe[2]; /* non-blocking: a byte when the send queue got a notice */
    pthread_t thread;
    bool started;
    pthread_mutex_t q_mu; /* guards the send queue and dropped */
    char **q;             /* notices to send (strdup), oldest first */
    size_t q_len, q_cap;
    uint64_t dropped;
};

static bool dbl_channel_ok(const char *s)
{
    size_t n = 0;

    if (s == NULL || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_')) {
        return false;
    }
    for (; s[n] != '\0'; n++) {
        char ch = s[n];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) {
            return false;
        }
    }
    return n <= DBL_CHANNEL_MAX;
}

/* Waits up to ms for the stop pipe; true when stopping. */
static bool dbl_wait_stop(struct db_listener *l, int ms)
{
    struct pollfd p = {.fd = l->stop_pipe[0], .events = POLLIN};
    int r;

    do {
        r = poll(&p, 1, ms);
    } while (r < 0 && errno == EINTR);
    return r > 0;
}

/* A connection that listens on the channel, or NULL. A dead peer must be
 * noticed even when nothing is sent to us (a crashed host or a dropped
 * flow sends no FIN): TCP keepalives and a user timeout bound how long a
 * send or a silent connection can hang, connect_timeout bounds a connect
 * (and so how long db_listener_free can wait). Settings in db.url come
 * later in the list and win. */
static PGconn *dbl_connect(struct db_listener *l)
{
    static const char *const keys[] = {
        "connect_timeout",  "keepalives",       "keepalives_idle", "keepalives_interval",
        "keepalives_count", "tcp_user_timeout", "dbname",          NULL};
    const char *vals[] = {DBL_CONNECT_TIMEOUT_S,   "1",       "10", "5", "3",
                          DBL_TCP_USER_TIMEOUT_MS, l->target, NULL};
    char sql[sizeof(DBL_LISTEN_PREFIX) + DBL_CHANNEL_MAX];
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    PGresult *res = NULL;

    if (pg == NULL) {
        return NULL;
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        OT_LOG_WARN("listen %s: cannot connect: %s", l->channel, PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    /* The channel was checked to be a plain identifier: no quoting needed. */
    (void)snprintf(sql, sizeof(sql), DBL_LISTEN_PREFIX "%s", l->channel);
    res = PQexec(pg, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        OT_LOG_WARN("listen %s: %s", l->channel, PQerrorMessage(pg));
        PQclear(res);
        PQfinish(pg);
        return NULL;
    }
    PQclear(res);
    return pg;
}

/* Hands every queued notification to fn. */
static void dbl_drain(struct db_listener *l, PGconn *pg)
{
    PGnotify *n;

    while ((n = PQnotifies(pg)) != NULL) {
        if (strcmp(n->relname, l->channel) == 0) {
            l->fn(l->ctx, DB_NOTE_MSG, n->extra != NULL ? n->extra : "");
        }
        PQfreemem(n);
    }
}

/* After a quiet spell: one round trip proves the server still answers (a
 * pooler that swallows LISTEN, a peer that vanished) - keepalives and the
 * user timeout bound the wait. Also reads whatever sat in the TLS buffer. */
static bool dbl_heartbeat(PGconn *pg)
{
    PGresult *res = PQexec(pg, "SELECT 1");
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;

    PQclear(res);
    return ok;
}

static ot_err dbl_cat(struct ot_buf *b, const char *s)
{
    return ot_buf_append(b, s, strlen(s));
}

/* Sends up to DBL_SEND_BATCH queued notices in one transaction with
 * synchronous_commit off (a wake-up need not wait for the WAL flush: what
 * it announces committed before it was queued). On failure they go back to
 * the front of the queue for the next connection. */
static void dbl_send(struct db_listener *l, PGconn *pg)
{
    char *batch[DBL_SEND_BATCH];
    size_t n = 0;
    struct ot_buf sql;
    PGresult *res = NULL;
    bool ok = false;

    pthread_mutex_lock(&l->q_mu);
    n = l->q_len < DBL_SEND_BATCH ? l->q_len : DBL_SEND_BATCH;
    memcpy(batch, l->q, n * sizeof(*batch));
    memmove(l->q, l->q + n, (l->q_len - n) * sizeof(*l->q));
    l->q_len -= n;
    pthread_mutex_unlock(&l->q_mu);
    if (n == 0) {
        return;
    }
    ot_buf_init(&sql, 0);
    ok = dbl_cat(&sql, "BEGIN; SET LOCAL synchronous_commit TO off; SELECT") == OT_OK;
    for (size_t i = 0; i < n && ok; i++) {
        char *lit = PQescapeLiteral(pg, batch[i], strlen(batch[i]));
        /* The channel was checked to be a plain identifier. */
        ok = lit != NULL && dbl_cat(&sql, i == 0 ? " pg_notify('" : ", pg_notify('") == OT_OK
             && dbl_cat(&sql, l->channel) == OT_OK && dbl_cat(&sql, "', ") == OT_OK
             && dbl_cat(&sql, lit) == OT_OK && dbl_cat(&sql, ")") == OT_OK;
        PQfreemem(lit);
    }
    ok = ok && dbl_cat(&sql, "; COMMIT") == OT_OK && ot_buf_append(&sql, "", 1) == OT_OK;
    if (ok) {
        res = PQexec(pg, (const char *)sql.data);
        ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok) {
            OT_LOG_WARN("notify %s: %s", l->channel, PQerrorMessage(pg));
        }
        PQclear(res);
        /* an error left the transaction open: end it (nothing was sent) */
        if (!ok && PQtransactionStatus(pg) == PQTRANS_INERROR) {
            PQclear(PQexec(pg, "ROLLBACK"));
        }
    }
    ot_buf_free(&sql);
    if (ok) {
        for (size_t i = 0; i < n; i++) {
            free(batch[i]);
        }
        return;
    }
    /* Back to the front (the queue may have grown past its bound meanwhile:
     * it is a bound on what callers add, not a hard cap). */
    pthread_mutex_lock(&l->q_mu);
    if (l->q_len + n > l->q_cap) {
        size_t cap = l->q_len + n;
        char **q = realloc(l->q, cap * sizeof(*q));
        if (q == NULL) {
            l->dropped += n;
            pthread_mutex_unlock(&l->q_mu);
            for (size_t i = 0; i < n; i++) {
                free(batch[i]);
            }
            return;
        }
        l->q = q;
        l->q_cap = cap;
    }
    memmove(l->q + n, l->q, l->q_len * sizeof(*l->q));
    memcpy(l->q, batch, n * sizeof(*batch));
    l->q_len += n;
    pthread_mutex_unlock(&l->q_mu);
}

static bool dbl_queued(struct db_listener *l)
{
    bool any;

    pthread_mutex_lock(&l->q_mu);
    any = l->q_len > 0;
    pthread_mutex_unlock(&l->q_mu);
    return any;
}

/* Empties the wake pipe (non-blocking). */
static void dbl_drain_wake(struct db_listener *l)
{
    char b[64];

    while (read(l->wake_pipe[0], b, sizeof(b)) > 0) {
    }
}

static void *dbl_main(void *arg)
{
    struct db_listener *l = arg;
    PGconn *pg = NULL;
    int backoff = DBL_BACKOFF_MIN;

    for (;;) {
        if (pg == NULL) {
            pg = dbl_connect(l);
            if (pg == NULL) {
                if (dbl_wait_stop(l, backoff)) {
                    break;
                }
                backoff = backoff * 2 > DBL_BACKOFF_MAX ? DBL_BACKOFF_MAX : backoff * 2;
                continue;
            }
            backoff = DBL_BACKOFF_MIN;
            OT_LOG_INFO("listening on %s", l->channel);
            l->fn(l->ctx, DB_NOTE_UP, NULL);
            dbl_drain(l, pg);
        }
        if (dbl_queued(l)) {
            dbl_send(l, pg);
            dbl_drain(l, pg);
            if (PQstatus(pg) == CONNECTION_OK && dbl_queued(l)) {
                continue; /* more than a batch: the next one before waiting */
            }
        }
        struct pollfd p[3] = {
            {.fd = PQsocket(pg), .events = POLLIN},
            {.fd = l->stop_pipe[0], .events = POLLIN},
            {.fd = l->wake_pipe[0], .events = POLLIN},
        };
        int r = poll(p, 3, DBL_HEARTBEAT_MS);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 || (p[1].revents & POLLIN) != 0) {
            break;
        }
        if ((p[2].revents & POLLIN) != 0) {
            dbl_drain_wake(l);
        }
        if ((r == 0 && !dbl_heartbeat(pg)) || PQconsumeInput(pg) == 0
            || PQstatus(pg) != CONNECTION_OK) {
            OT_LOG_WARN("listen %s: connection lost: %s", l->channel, PQerrorMessage(pg));
            dbl_drain(l, pg);
            PQfinish(pg);
            pg = NULL;
            l->fn(l->ctx, DB_NOTE_DOWN, NULL);
            continue;
        }
        dbl_drain(l, pg);
    }
    PQfinish(pg);
    return NULL;
}

ot_err db_listen(struct db *db, const char *channel, db_notify_fn fn, void *ctx,
                 struct db_listener **out)
{
    ot_err err = OT_OK;
    struct db_listener *l = NULL;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (db == NULL || fn == NULL || !dbl_channel_ok(channel)) {
        return OT_E_ARG;
    }
    if (db->kind != DB_PG) {
        return OT_E_UNSUPPORTED;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return OT_E_NOMEM;
    }
    l->stop_pipe[0] = l->stop_pipe[1] = -1;
    l->wake_pipe[0] = l->wake_pipe[1] = -1;
    pthread_mutex_init(&l->q_mu, NULL);
    l->target = strdup(db->target);
    if (l->target == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    (void)snprintf(l->channel, sizeof(l->channel), "%s", channel);
    l->fn = fn;
    l->ctx = ctx;
    if (pipe(l->stop_pipe) != 0) {
        OT_FAIL(OT_E_IO);
    }
    (void)fcntl(l->stop_pipe[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(l->stop_pipe[1], F_SETFD, FD_CLOEXEC);
    if (pipe(l->wake_pipe) != 0) {
        OT_FAIL(OT_E_IO);
    }
    for (int i = 0; i < 2; i++) {
        (void)fcntl(l->wake_pipe[i], F_SETFD, FD_CLOEXEC);
        (void)fcntl(l->wake_pipe[i], F_SETFL, fcntl(l->wake_pipe[i], F_GETFL) | O_NONBLOCK);
    }
    OT_TRY(ot_thread_start(&l->thread, dbl_main, l));
    l->started = true;
    *out = l;
    l = NULL;
out:
    db_listener_free(l);
    return err;
}

void db_listener_free(struct db_listener *l)
{
    if (l == NULL) {
        return;
    }
    if (l->started) {
        ssize_t w;
        do {
            w = write(l->stop_pipe[1], "x", 1);
        } while (w < 0 && errno == EINTR);
        pthread_join(l->thread, NULL);
    }
    if (l->stop_pipe[0] >= 0) {
        close(l->stop_pipe[0]);
    }
    if (l->stop_pipe[1] >= 0) {
        close(l->stop_pipe[1]);
    }
    for (int i = 0; i < 2; i++) {
        if (l->wake_pipe[i] >= 0) {
            close(l->wake_pipe[i]);
        }
    }
    for (size_t i = 0; i < l->q_len; i++) {
        free(l->q[i]);
    }
    free(l->q);
    pthread_mutex_destroy(&l->q_mu);
    if (l->target != NULL) {
        ot_mem_wipe(l->target, strlen(l->target)); /* may hold a password */
        free(l->target);
    }
    free(l);
}

ot_err db_listener_notify(struct db_listener *l, const char *payload)
{
    size_t n;
    char *p;
    bool first;
    ssize_t w;

    if (l == NULL || payload == NULL) {
        return OT_E_ARG;
    }
    n = strlen(payload);
    if (n == 0 || n > DB_NOTE_PAYLOAD_MAX) {
        return OT_E_FORMAT;
    }
    pthread_mutex_lock(&l->q_mu);
    if (l->q_len >= DB_NOTE_QUEUE_MAX) {
        l->dropped++;
        pthread_mutex_unlock(&l->q_mu);
        return OT_E_LIMIT;
    }
    if (l->q_len == l->q_cap) {
        size_t cap = l->q_cap == 0 ? 64 : l->q_cap * 2;
        char **q = realloc(l->q, cap * sizeof(*q));
        if (q == NULL) {
            l->dropped++;
            pthread_mutex_unlock(&l->q_mu);
            return OT_E_NOMEM;
        }
        l->q = q;
        l->q_cap = cap;
    }
    p = strdup(payload);
    if (p == NULL) {
        l->dropped++;
        pthread_mutex_unlock(&l->q_mu);
        return OT_E_NOMEM;
    }
    first = l->q_len == 0;
    l->q[l->q_len++] = p;
    pthread_mutex_unlock(&l->q_mu);
    if (first) {
        do {
            w = write(l->wake_pipe[1], "n", 1);
        } while (w < 0 && errno == EINTR);
        /* EAGAIN: the pipe is full of wake-ups already */
    }
    return OT_OK;
}

uint64_t db_listener_dropped(struct db_listener *l)
{
    uint64_t n;

    if (l == NULL) {
        return 0;
    }
    pthread_mutex_lock(&l->q_mu);
    n = l->dropped;
    pthread_mutex_unlock(&l->q_mu);
    return n;
}
