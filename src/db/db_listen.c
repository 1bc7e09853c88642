/* Change notifications over PostgreSQL LISTEN/NOTIFY (see db.h). One
 * connection per listener, outside the pool, watched by its own thread with
 * poll(): the libpq socket and a pipe that db_listener_free writes to. */
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

struct db_listener {
    char *target; /* libpq conninfo (copied: the listener may outlive nothing, but owns its copy) */
    char channel[DBL_CHANNEL_MAX + 1];
    db_notify_fn fn;
    void *ctx;
    int stop_pipe[2];
    pthread_t thread;
    bool started;
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
        struct pollfd p[2] = {
            {.fd = PQsocket(pg), .events = POLLIN},
            {.fd = l->stop_pipe[0], .events = POLLIN},
        };
        int r = poll(p, 2, DBL_HEARTBEAT_MS);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 || (p[1].revents & POLLIN) != 0) {
            break;
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
    if (l->target != NULL) {
        ot_mem_wipe(l->target, strlen(l->target)); /* may hold a password */
        free(l->target);
    }
    free(l);
}
