/* SQLite back end.
 *
 * Each pooled connection is its own sqlite3 handle opened with SQLITE_OPEN_NOMUTEX: the
 * pool guarantees one thread per connection at a time, so SQLite's own per-call mutex
 * (FULLMUTEX) would only cost time. WAL lets readers run beside the one writer;
 * synchronous=NORMAL keeps every commit in the WAL file before returning (durable against a
 * process crash, see db.h), busy_timeout makes a second writer wait instead of failing.
 */
#include "db/db.h"

#define OT_LOG_COMPONENT "db.sqlite"
#include "core/log.h"
#include "db/db_priv.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

struct dbs_stmt {
    sqlite3_stmt *st;
    sqlite3 *h;
};

static ot_err dbs_err(sqlite3 *h, int rc, const char *what)
{
    int primary = rc & 0xff;

    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        OT_LOG_DEBUG("%s: conflict: %s", what, sqlite3_errmsg(h));
        return OT_E_CONFLICT;
    default:
        break;
    }
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
        OT_LOG_WARN("%s: busy: %s", what, sqlite3_errmsg(h));
        return OT_E_TIMEOUT;
    }
    if (primary == SQLITE_NOMEM) {
        return OT_E_NOMEM;
    }
    if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) {
        OT_LOG_ERROR("%s: database file is corrupt: %s (%d)", what,
                     h != NULL ? sqlite3_errmsg(h) : sqlite3_errstr(rc), rc);
        return OT_E_CORRUPT;
    }
    if (primary == SQLITE_RANGE) {
        return OT_E_ARG;
    }
    OT_LOG_ERROR("%s: %s (%d)", what, h != NULL ? sqlite3_errmsg(h) : sqlite3_errstr(rc), rc);
    return OT_E_DB;
}

static ot_err dbs_exec(void *conn, const char *sql)
{
    sqlite3 *h = conn;
    int rc = sqlite3_exec(h, sql, NULL, NULL, NULL);

    if (rc != SQLITE_OK) {
        return dbs_err(h, sqlite3_extended_errcode(h), "exec");
    }
    return OT_OK;
}

/* Runs a PRAGMA that answers one text value (journal_mode) and returns a copy of it. */
static ot_err dbs_pragma_text(sqlite3 *h, const char *sql, char *val, size_t cap)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(h, sql, -1, &st, NULL);
    ot_err err = OT_OK;

    val[0] = '\0';
    if (rc != SQLITE_OK) {
        return dbs_err(h, rc, "pragma");
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        if (t != NULL) {
            size_t n = strlen((const char *)t);
            if (n >= cap) {
                n = cap - 1;
            }
            memcpy(val, t, n);
            val[n] = '\0';
        }
    } else if (rc != SQLITE_DONE) {
        err = dbs_err(h, sqlite3_extended_errcode(h), "pragma");
    }
    sqlite3_finalize(st);
    return err;
}

/* A commit left the WAL at pages: the checkpointer (db.c) copies it back
 * off the committing thread. */
static int dbs_wal_hook(void *arg, sqlite3 *h, const char *name, int pages)
{
    (void)h;
    (void)name;
    if (pages >= DB_CKPT_PAGES) {
        db_ckpt_kick(arg);
    }
    return SQLITE_OK;
}

static ot_err dbs_conn_open(const struct db *db, void **out)
{
    ot_err err = OT_OK;
    sqlite3 *h = NULL;
    bool mem = strcmp(db->target, ":memory:") == 0;
    char mode[16];
    int rc;

    *out = NULL;
    rc = sqlite3_open_v2(db->target, &h,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        OT_LOG_ERROR("cannot open %s: %s", db->target,
                     h != NULL ? sqlite3_errmsg(h) : sqlite3_errstr(rc));
        OT_FAIL(OT_E_DB);
    }
    sqlite3_extended_result_codes(h, 1);
    sqlite3_busy_timeout(h, (int)db->cfg.busy_timeout_ms);
    if (!mem) {
        OT_TRY(dbs_pragma_text(h, "PRAGMA journal_mode=WAL", mode, sizeof mode));
        if (strcmp(mode, "wal") != 0) {
            OT_LOG_ERROR("cannot switch %s to WAL (journal_mode=%s)", db->target, mode);
            OT_FAIL(OT_E_DB);
        }
        if (db->ckpt_on) {
            /* no checkpoint inside a commit: db.c's checkpointer does them */
            sqlite3_wal_hook(h, dbs_wal_hook, (void *)db);
        }
    }
    OT_TRY(
        dbs_exec(h, db->cfg.sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
    OT_TRY(dbs_exec(h, "PRAGMA foreign_keys=ON"));
    /* Check each b-tree cell's size as pages are read: damage is reported (SQLITE_CORRUPT)
     * instead of read as data. */
    OT_TRY(dbs_exec(h, "PRAGMA cell_size_check=ON"));
    if (!mem && !db->cfg.no_mmap) {
        /* Reads through a map of the file (address space shared with the OS page cache, not
         * memory): a point lookup costs about half as much as with pread. */
        OT_TRY(dbs_exec(h, "PRAGMA mmap_size=1073741824"));
    }
    *out = h;
    h = NULL;
out:
    if (h != NULL) {
        sqlite3_close_v2(h);
    }
    return err;
}

/* PRAGMA quick_check at db_open: "ok", or one row per problem found. */
static ot_err dbs_check(const struct db *db, void *conn)
{
    sqlite3 *h = conn;
    sqlite3_stmt *st = NULL;
    ot_err err = OT_OK;
    int rc;

    if (strcmp(db->target, ":memory:") == 0) {
        return OT_OK;
    }
    rc = sqlite3_prepare_v2(h, "PRAGMA quick_check(5)", -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return dbs_err(h, sqlite3_extended_errcode(h), "quick_check");
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);

        if (t != NULL && (strcmp(t, "ok") == 0 || strncmp(t, "*** in database ", 16) == 0)) {
            continue; /* fine, or only the heading of the problems below */
        }
        OT_LOG_ERROR("database %s is corrupt (PRAGMA quick_check): %s", db->target,
                     t != NULL ? t : "?");
        err = OT_E_CORRUPT;
    }
    if (rc != SQLITE_DONE && err == OT_OK) {
        int primary = sqlite3_extended_errcode(h) & 0xff;

        if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) {
            /* so damaged that the check itself stopped */
            OT_LOG_ERROR("database %s is corrupt (PRAGMA quick_check): %s", db->target,
                         sqlite3_errmsg(h));
            err = OT_E_CORRUPT;
        } else {
            err = dbs_err(h, sqlite3_extended_errcode(h), "quick_check");
        }
    }
    sqlite3_finalize(st);
    if (err == OT_E_CORRUPT) {
        OT_LOG_ERROR("refusing to open %s: restore it from a backup", db->target);
    }
    return err;
}

/* A row that violates the schema (possible only in a damaged file or one edited behind
 * the service's back): the value of col has storage class `have` where the declared type
 * says otherwise, or is NULL in a NOT NULL column. */
static ot_err dbs_schema_violation(struct dbs_stmt *s, int col, const char *what)
{
    const char *tab = sqlite3_column_table_name(s->st, col);
    const char *name = sqlite3_column_origin_name(s->st, col);

    OT_LOG_ERROR("row violates the schema: %s.%s %s", tab != NULL ? tab : "?",
                 name != NULL ? name : "?", what);
    return OT_E_CORRUPT;
}

/* NULL read from a column: a violation if the column is declared NOT NULL. */
static ot_err dbs_null_ok(struct dbs_stmt *s, int col)
{
    const char *tab = sqlite3_column_table_name(s->st, col);
    const char *name = sqlite3_column_origin_name(s->st, col);
    int notnull = 0;

    if (tab == NULL || name == NULL) {
        return OT_OK; /* an expression (COUNT, MAX...): no declared column */
    }
    if (sqlite3_table_column_metadata(s->h, sqlite3_column_database_name(s->st, col), tab, name,
                                      NULL, NULL, &notnull, NULL, NULL)
            == SQLITE_OK
        && notnull) {
        return dbs_schema_violation(s, col, "is NULL (declared NOT NULL)");
    }
    return OT_OK;
}

/* Declared type of col: 'T' TEXT, 'I' an integer type, 'B' BLOB, 0 other or none. */
static char dbs_decl(struct dbs_stmt *s, int col)
{
    const char *d = sqlite3_column_decltype(s->st, col);

    if (d == NULL) {
        return 0;
    }
    if (strcmp(d, "TEXT") == 0) {
        return 'T';
    }
    if (strcmp(d, "BIGINT") == 0 || strcmp(d, "INTEGER") == 0) {
        return 'I';
    }
    if (strcmp(d, "BLOB") == 0) {
        return 'B';
    }
    return 0;
}

static void dbs_conn_close(void *conn)
{
    sqlite3_close_v2(conn);
}

static bool dbs_conn_ok(void *conn)
{
    (void)conn;
    return true;
}

static enum db_txn dbs_txn(void *conn)
{
    return sqlite3_get_autocommit(conn) ? DB_TXN_IDLE : DB_TXN_OPEN;
}

static ot_err dbs_prepare(void *conn, const char *sql, void **out)
{
    ot_err err = OT_OK;
    sqlite3 *h = conn;
    struct dbs_stmt *s = NULL;
    char *text = NULL;
    const char *tail = NULL;
    size_t len = strlen(sql);
    int rc;

    *out = NULL;
    if (len > (size_t)INT32_MAX - 1) {
        return OT_E_ARG;
    }
    text = malloc(len + 1);
    s = calloc(1, sizeof *s);
    if (text == NULL || s == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    db_sql_params_to_sqlite(sql, text);
    s->h = h;
    rc = sqlite3_prepare_v3(h, text, -1, SQLITE_PREPARE_PERSISTENT, &s->st, &tail);
    if (rc != SQLITE_OK) {
        OT_FAIL(dbs_err(h, rc, "prepare"));
    }
    if (s->st == NULL) {
        OT_LOG_ERROR("prepare: empty statement");
        OT_FAIL(OT_E_DB);
    }
    while (tail != NULL
           && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == '\r' || *tail == ';')) {
        tail++;
    }
    if (tail != NULL && *tail != '\0') {
        OT_LOG_ERROR("prepare: more than one statement");
        OT_FAIL(OT_E_DB);
    }
    *out = s;
    s = NULL;
out:
    if (s != NULL) {
        sqlite3_finalize(s->st);
        free(s);
    }
    free(text);
    return err;
}

static void dbs_finalize(void *st, bool live)
{
    struct dbs_stmt *s = st;

    (void)live;
    sqlite3_finalize(s->st);
    free(s);
}

static void dbs_clear(void *st)
{
    struct dbs_stmt *s = st;

    sqlite3_reset(s->st);
    sqlite3_clear_bindings(s->st);
}

static ot_err dbs_bind_rc(struct dbs_stmt *s, int rc)
{
    if (rc == SQLITE_OK) {
        return OT_OK;
    }
    if (rc == SQLITE_RANGE) {
        return OT_E_ARG;
    }
    return dbs_err(s->h, rc, "bind");
}

static ot_err dbs_bind_text(void *st, int idx, const char *v)
{
    struct dbs_stmt *s = st;

    return dbs_bind_rc(s, sqlite3_bind_text(s->st, idx, v, -1, SQLITE_TRANSIENT));
}

static ot_err dbs_bind_int64(void *st, int idx, int64_t v)
{
    struct dbs_stmt *s = st;

    return dbs_bind_rc(s, sqlite3_bind_int64(s->st, idx, (sqlite3_int64)v));
}

static ot_err dbs_bind_blob(void *st, int idx, const void *p, size_t n)
{
    struct dbs_stmt *s = st;

    /* p is never NULL here (db.c passes a static byte for n == 0): NULL would bind NULL. */
    return dbs_bind_rc(s, sqlite3_bind_blob64(s->st, idx, p, (sqlite3_uint64)n, SQLITE_TRANSIENT));
}

static ot_err dbs_bind_null(void *st, int idx)
{
    struct dbs_stmt *s = st;

    return dbs_bind_rc(s, sqlite3_bind_null(s->st, idx));
}

static ot_err dbs_step(void *st, bool *row, int64_t *changes)
{
    struct dbs_stmt *s = st;
    int rc = sqlite3_step(s->st);

    *row = false;
    if (rc == SQLITE_ROW) {
        *row = true;
        return OT_OK;
    }
    if (rc == SQLITE_DONE) {
        /* sqlite3_changes64 keeps the count of the last write: a SELECT changed nothing. */
        *changes = sqlite3_stmt_readonly(s->st) ? 0 : sqlite3_changes64(s->h);
        return OT_OK;
    }
    return dbs_err(s->h, sqlite3_extended_errcode(s->h), "step");
}

static bool dbs_writes(void *st)
{
    return !sqlite3_stmt_readonly(((struct dbs_stmt *)st)->st);
}

static int dbs_col_count(void *st)
{
    struct dbs_stmt *s = st;

    return sqlite3_column_count(s->st);
}

static bool dbs_col_is_null(void *st, int col)
{
    struct dbs_stmt *s = st;

    return sqlite3_column_type(s->st, col) == SQLITE_NULL;
}

static ot_err dbs_col_text(void *st, int col, const char **out)
{
    struct dbs_stmt *s = st;
    int type = sqlite3_column_type(s->st, col);

    if (type == SQLITE_NULL) {
        *out = NULL;
        return dbs_null_ok(s, col);
    }
    if (type != SQLITE_TEXT && dbs_decl(s, col) == 'T') {
        return dbs_schema_violation(s, col, "holds a non-text value (declared TEXT)");
    }
    *out = (const char *)sqlite3_column_text(s->st, col);
    if (*out == NULL) {
        return OT_E_NOMEM;
    }
    return OT_OK;
}

static ot_err dbs_col_int64(void *st, int col, int64_t *out)
{
    struct dbs_stmt *s = st;

    switch (sqlite3_column_type(s->st, col)) {
    case SQLITE_NULL:
        *out = 0;
        return dbs_null_ok(s, col);
    case SQLITE_INTEGER:
        *out = (int64_t)sqlite3_column_int64(s->st, col);
        return OT_OK;
    default:
        if (dbs_decl(s, col) == 'I') {
            return dbs_schema_violation(s, col, "holds a non-integer value (declared integer)");
        }
        /* Same rule as PostgreSQL's text results: a decimal integer or an error. */
        if (db_parse_int64((const char *)sqlite3_column_text(s->st, col), out) != OT_OK) {
            OT_LOG_ERROR("column %d is not an integer", col);
            return OT_E_DB;
        }
        return OT_OK;
    }
}

static ot_err dbs_col_blob(void *st, int col, const uint8_t **p, size_t *n)
{
    static const uint8_t empty[1] = {0};
    struct dbs_stmt *s = st;
    int len;

    if (sqlite3_column_type(s->st, col) == SQLITE_NULL) {
        *p = NULL;
        *n = 0;
        return dbs_null_ok(s, col);
    }
    if (sqlite3_column_type(s->st, col) != SQLITE_BLOB && dbs_decl(s, col) == 'B') {
        return dbs_schema_violation(s, col, "holds a non-blob value (declared BLOB)");
    }
    *p = sqlite3_column_blob(s->st, col);
    len = sqlite3_column_bytes(s->st, col);
    if (*p == NULL) {
        if (len != 0) {
            return OT_E_NOMEM;
        }
        *p = empty;
    }
    *n = (size_t)len;
    return OT_OK;
}

const struct db_ops db_sqlite_ops = {
    .name = "sqlite",
    .begin_sql = "BEGIN IMMEDIATE",
    .conn_open = dbs_conn_open,
    .conn_close = dbs_conn_close,
    .conn_ok = dbs_conn_ok,
    .conn_probe = dbs_conn_ok,
    .txn = dbs_txn,
    .writes = dbs_writes,
    .exec = dbs_exec,
    .prepare = dbs_prepare,
    .finalize = dbs_finalize,
    .clear = dbs_clear,
    .bind_text = dbs_bind_text,
    .bind_int64 = dbs_bind_int64,
    .bind_blob = dbs_bind_blob,
    .bind_null = dbs_bind_null,
    .step = dbs_step,
    .col_count = dbs_col_count,
    .col_is_null = dbs_col_is_null,
    .col_text = dbs_col_text,
    .col_int64 = dbs_col_int64,
    .col_blob = dbs_col_blob,
    .check = dbs_check,
};
