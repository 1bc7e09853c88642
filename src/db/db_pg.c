/* PostgreSQL back end over libpq.
 *
 * Each pooled connection prepares a statement once (PQprepare under a generated name,
 * "ot_<n>") and describes it, so the parameter types the server inferred are known:
 * parameters travel as text, except blobs, which travel as binary bytea (no escaping, zero
 * bytes are fine). Results come back in text format; bytea columns ("\x<hex>") are decoded
 * on demand by db_col_blob. The whole result of one execution is fetched on the first
 * db_step and then walked row by row (see db.h: page big reads with LIMIT).
 *
 * A connection whose server side went away (server restart, pg_terminate_backend) is noticed
 * when db_acquire probes it (the server's closing message and end of file are already in the
 * socket) or, when it dies while borrowed, by the failing call; either way db_acquire then
 * opens a fresh one, so a restart costs at most the requests in flight, not the pool.
 */
#include "db/db.h"

#define OT_LOG_COMPONENT "db.pg"
#include "core/log.h"
#include "db/db_priv.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DBP_BYTEA_OID 17u /* pg_type.oid of bytea (src/include/catalog/pg_type.dat) */

struct dbp_conn {
    PGconn *pg;
    unsigned seq; /* statement names */
};

struct dbp_blob {
    int row;
    unsigned char *p;
    size_t n;
};

struct dbp_stmt {
    struct dbp_conn *c;
    char name[24];
    int nparams;
    int ncols;
    Oid *ptypes;
    char **vals;
    int *lens;
    int *fmts;
    PGresult *res;
    int nrows;
    int row;
    struct dbp_blob *blobs; /* per column, decoded bytea of row blobs[i].row */
};

/* SQLSTATE (PostgreSQL appendix A) -> ot_err. */
static const struct {
    const char *state;
    ot_err err;
} dbp_states[] = {
    {"23505", OT_E_CONFLICT}, /* unique_violation */
    {"23503", OT_E_CONFLICT}, /* foreign_key_violation */
    {"40001", OT_E_CONFLICT}, /* serialization_failure */
    {"40P01", OT_E_CONFLICT}, /* deadlock_detected */
    {"55P03", OT_E_TIMEOUT},  /* lock_not_available (lock_timeout) */
    {"57014", OT_E_TIMEOUT},  /* query_canceled (statement_timeout) */
};

static ot_err dbp_err(PGconn *pg, const PGresult *res, const char *what)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    /* The primary message only: DETAIL lines may quote row values. */
    const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    if (msg == NULL) {
        msg = PQerrorMessage(pg);
    }
    if (state != NULL) {
        for (size_t i = 0; i < sizeof dbp_states / sizeof dbp_states[0]; i++) {
            if (strcmp(state, dbp_states[i].state) == 0) {
                if (dbp_states[i].err == OT_E_CONFLICT) {
                    OT_LOG_DEBUG("%s: conflict sqlstate=%s: %s", what, state, msg);
                } else {
                    OT_LOG_WARN("%s: timeout sqlstate=%s: %s", what, state, msg);
                }
                return dbp_states[i].err;
            }
        }
    }
    if (PQstatus(pg) == CONNECTION_BAD) {
        OT_LOG_ERROR("%s: connection lost: %s", what, PQerrorMessage(pg));
    } else {
        OT_LOG_ERROR("%s: sqlstate=%s: %s", what, state != NULL ? state : "-", msg);
    }
    return OT_E_DB;
}

static bool dbp_res_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);

    return res != NULL
           && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY);
}

static ot_err dbp_exec(void *conn, const char *sql)
{
    struct dbp_conn *c = conn;
    PGresult *res = PQexec(c->pg, sql);
    ot_err err = OT_OK;

    if (!dbp_res_ok(res)) {
        err = dbp_err(c->pg, res, "exec");
    }
    PQclear(res);
    return err;
}

static void dbp_notice(void *arg, const char *msg)
{
    (void)arg;
    OT_LOG_DEBUG("server notice: %s", msg);
}

static void dbp_conn_close(void *conn)
{
    struct dbp_conn *c = conn;

    if (c == NULL) {
        return;
    }
    PQfinish(c->pg);
    free(c);
}

static ot_err dbp_conn_open(const struct db *db, void **out)
{
    ot_err err = OT_OK;
    struct dbp_conn *c = NULL;
    PGresult *res = NULL;
    char ms[24];
    const char *params[1] = {ms};

    *out = NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        return OT_E_NOMEM;
    }
    c->pg = PQconnectdb(db->target);
    if (c->pg == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (PQstatus(c->pg) != CONNECTION_OK) {
        OT_LOG_ERROR("cannot connect: %s", PQerrorMessage(c->pg));
        OT_FAIL(OT_E_DB);
    }
    PQsetNoticeProcessor(c->pg, dbp_notice, NULL);
    /* A row lock held too long fails like SQLite's busy timeout (55P03 -> OT_E_TIMEOUT). */
    (void)snprintf(ms, sizeof ms, "%u", db->cfg.busy_timeout_ms); /* always fits */
    res = PQexecParams(c->pg, "SELECT set_config('lock_timeout', $1, false)", 1, NULL, params, NULL,
                       NULL, 0);
    if (!dbp_res_ok(res)) {
        OT_FAIL(dbp_err(c->pg, res, "set lock_timeout"));
    }
    *out = c;
    c = NULL;
out:
    PQclear(res);
    dbp_conn_close(c);
    return err;
}

static bool dbp_conn_ok(void *conn)
{
    struct dbp_conn *c = conn;

    return PQstatus(c->pg) == CONNECTION_OK;
}

/* libpq keeps its socket non-blocking, so PQconsumeInput only reads what is there: the
 * FATAL message of a terminated backend, then end of file, which makes the connection
 * CONNECTION_BAD. Two reads cover both; a healthy idle connection has nothing to read. */
static bool dbp_conn_probe(void *conn)
{
    struct dbp_conn *c = conn;

    for (int i = 0; i < 2 && PQstatus(c->pg) == CONNECTION_OK; i++) {
        if (PQconsumeInput(c->pg) == 0) {
            break;
        }
    }
    return PQstatus(c->pg) == CONNECTION_OK;
}

static enum db_txn dbp_txn(void *conn)
{
    struct dbp_conn *c = conn;

    switch (PQtransactionStatus(c->pg)) {
    case PQTRANS_INTRANS:
    case PQTRANS_ACTIVE:
        return DB_TXN_OPEN;
    case PQTRANS_INERROR:
        return DB_TXN_ABORTED;
    default:
        return DB_TXN_IDLE;
    }
}

static void dbp_clear(void *st)
{
    struct dbp_stmt *s = st;

    PQclear(s->res);
    s->res = NULL;
    s->nrows = 0;
    s->row = -1;
    for (int i = 0; i < s->nparams; i++) {
        free(s->vals[i]);
        s->vals[i] = NULL;
        s->lens[i] = 0;
        s->fmts[i] = 0;
    }
    for (int i = 0; i < s->ncols; i++) {
        PQfreemem(s->blobs[i].p);
        s->blobs[i].p = NULL;
        s->blobs[i].n = 0;
        s->blobs[i].row = -1;
    }
}

static void dbp_finalize(void *st, bool live)
{
    struct dbp_stmt *s = st;

    dbp_clear(s);
    if (live && s->name[0] != '\0' && PQstatus(s->c->pg) == CONNECTION_OK
        && PQtransactionStatus(s->c->pg) != PQTRANS_INERROR) {
        /* The name is ours ("ot_<n>"), not caller input. */
        char sql[48];
        (void)snprintf(sql, sizeof sql, "DEALLOCATE %s", s->name);
        (void)dbp_exec(s->c, sql);
    }
    free(s->ptypes);
    free(s->vals);
    free(s->lens);
    free(s->fmts);
    free(s->blobs);
    free(s);
}

static ot_err dbp_prepare(void *conn, const char *sql, void **out)
{
    ot_err err = OT_OK;
    struct dbp_conn *c = conn;
    struct dbp_stmt *s = NULL;
    PGresult *res = NULL;

    *out = NULL;
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        return OT_E_NOMEM;
    }
    s->c = c;
    s->row = -1;
    (void)snprintf(s->name, sizeof s->name, "ot_%u", c->seq++);
    res = PQprepare(c->pg, s->name, sql, 0, NULL);
    if (!dbp_res_ok(res)) {
        s->name[0] = '\0'; /* nothing to deallocate */
        OT_FAIL(dbp_err(c->pg, res, "prepare"));
    }
    PQclear(res);
    res = PQdescribePrepared(c->pg, s->name);
    if (!dbp_res_ok(res)) {
        OT_FAIL(dbp_err(c->pg, res, "describe"));
    }
    s->nparams = PQnparams(res);
    s->ncols = PQnfields(res);
    s->ptypes = calloc((size_t)s->nparams + 1, sizeof *s->ptypes);
    s->vals = calloc((size_t)s->nparams + 1, sizeof *s->vals);
    s->lens = calloc((size_t)s->nparams + 1, sizeof *s->lens);
    s->fmts = calloc((size_t)s->nparams + 1, sizeof *s->fmts);
    s->blobs = calloc((size_t)s->ncols + 1, sizeof *s->blobs);
    if (s->ptypes == NULL || s->vals == NULL || s->lens == NULL || s->fmts == NULL
        || s->blobs == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (int i = 0; i < s->nparams; i++) {
        s->ptypes[i] = PQparamtype(res, i);
    }
    for (int i = 0; i < s->ncols; i++) {
        s->blobs[i].row = -1;
    }
    *out = s;
    s = NULL;
out:
    PQclear(res);
    if (s != NULL) {
        dbp_finalize(s, true);
    }
    return err;
}

/* Stores an owned value for parameter idx (1-based). v == NULL binds NULL. */
static ot_err dbp_bind(struct dbp_stmt *s, int idx, char *v, int len, int fmt)
{
    if (idx > s->nparams) {
        free(v);
        return OT_E_ARG;
    }
    free(s->vals[idx - 1]);
    s->vals[idx - 1] = v;
    s->lens[idx - 1] = len;
    s->fmts[idx - 1] = fmt;
    return OT_OK;
}

static ot_err dbp_bind_text(void *st, int idx, const char *v)
{
    char *copy = strdup(v);

    if (copy == NULL) {
        return OT_E_NOMEM;
    }
    return dbp_bind(st, idx, copy, 0, 0);
}

static ot_err dbp_bind_int64(void *st, int idx, int64_t v)
{
    char *txt = malloc(24);

    if (txt == NULL) {
        return OT_E_NOMEM;
    }
    (void)snprintf(txt, 24, "%" PRId64, v);
    return dbp_bind(st, idx, txt, 0, 0);
}

static ot_err dbp_bind_blob(void *st, int idx, const void *p, size_t n)
{
    /* One byte at least: a NULL value pointer would mean SQL NULL. */
    char *copy = malloc(n > 0 ? n : 1);

    if (copy == NULL) {
        return OT_E_NOMEM;
    }
    if (n > 0) {
        memcpy(copy, p, n);
    }
    return dbp_bind(st, idx, copy, (int)n, 1);
}

static ot_err dbp_bind_null(void *st, int idx)
{
    return dbp_bind(st, idx, NULL, 0, 0);
}

static ot_err dbp_step(void *st, bool *row, int64_t *changes)
{
    struct dbp_stmt *s = st;

    *row = false;
    if (s->res == NULL) {
        const char *tuples;
        s->res = PQexecPrepared(s->c->pg, s->name, s->nparams, (const char *const *)s->vals,
                                s->lens, s->fmts, 0);
        if (!dbp_res_ok(s->res)) {
            ot_err err = dbp_err(s->c->pg, s->res, "step");
            PQclear(s->res);
            s->res = NULL;
            return err;
        }
        s->nrows = PQntuples(s->res);
        s->row = -1;
        tuples = PQcmdTuples(s->res);
        /* A SELECT reports its row count: it changed nothing. INSERT/UPDATE/DELETE report
         * the rows they touched, with or without RETURNING (as SQLite counts them). */
        *changes = 0;
        if (tuples[0] != '\0' && strncmp(PQcmdStatus(s->res), "SELECT", 6) != 0) {
            (void)db_parse_int64(tuples, changes);
        }
    }
    if (s->row + 1 < s->nrows) {
        s->row++;
        *row = true;
    }
    return OT_OK;
}

static int dbp_col_count(void *st)
{
    struct dbp_stmt *s = st;

    return s->ncols;
}

static bool dbp_col_is_null(void *st, int col)
{
    struct dbp_stmt *s = st;

    return PQgetisnull(s->res, s->row, col) != 0;
}

static ot_err dbp_col_text(void *st, int col, const char **out)
{
    struct dbp_stmt *s = st;

    *out = PQgetisnull(s->res, s->row, col) ? NULL : PQgetvalue(s->res, s->row, col);
    return OT_OK;
}

static ot_err dbp_col_int64(void *st, int col, int64_t *out)
{
    struct dbp_stmt *s = st;

    if (PQgetisnull(s->res, s->row, col)) {
        *out = 0;
        return OT_OK;
    }
    if (db_parse_int64(PQgetvalue(s->res, s->row, col), out) != OT_OK) {
        OT_LOG_ERROR("column %d is not an integer", col);
        return OT_E_DB;
    }
    return OT_OK;
}

static ot_err dbp_col_blob(void *st, int col, const uint8_t **p, size_t *n)
{
    struct dbp_stmt *s = st;
    struct dbp_blob *b = &s->blobs[col];

    if (PQgetisnull(s->res, s->row, col)) {
        return OT_OK;
    }
    if (PQftype(s->res, col) != DBP_BYTEA_OID) {
        *p = (const uint8_t *)PQgetvalue(s->res, s->row, col);
        *n = (size_t)PQgetlength(s->res, s->row, col);
        return OT_OK;
    }
    if (b->row != s->row) {
        PQfreemem(b->p);
        b->p = PQunescapeBytea((const unsigned char *)PQgetvalue(s->res, s->row, col), &b->n);
        if (b->p == NULL) {
            b->n = 0;
            b->row = -1;
            return OT_E_NOMEM;
        }
        b->row = s->row;
    }
    *p = b->p;
    *n = b->n;
    return OT_OK;
}

const struct db_ops db_pg_ops = {
    .name = "postgresql",
    .begin_sql = "BEGIN",
    .conn_open = dbp_conn_open,
    .conn_close = dbp_conn_close,
    .conn_ok = dbp_conn_ok,
    .conn_probe = dbp_conn_probe,
    .txn = dbp_txn,
    .exec = dbp_exec,
    .prepare = dbp_prepare,
    .finalize = dbp_finalize,
    .clear = dbp_clear,
    .bind_text = dbp_bind_text,
    .bind_int64 = dbp_bind_int64,
    .bind_blob = dbp_bind_blob,
    .bind_null = dbp_bind_null,
    .step = dbp_step,
    .col_count = dbp_col_count,
    .col_is_null = dbp_col_is_null,
    .col_text = dbp_col_text,
    .col_int64 = dbp_col_int64,
    .col_blob = dbp_col_blob,
};
