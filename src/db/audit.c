/* Hash-chained audit log (see audit.h for the chain and its encoding).
 *
 * The head row (audit_head, id 1) holds the last seq and hash. Every append
 * reads it under the writer lock, chains the new row to it and moves it,
 * all in one transaction, so two writers can never fork the chain. The head
 * also anchors the end of the chain: deleting the newest rows leaves the
 * head pointing past the last row, which audit_verify reports.
 */
#include "db/audit.h"

#define OT_LOG_COMPONENT "db.audit"
#include "core/buf.h"
#include "core/log.h"
#include "db/db.h"

#include <openssl/evp.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AUDIT_DOMAIN      "opentsm-audit-v1"
#define AUDIT_LIST_DEF    100u
#define AUDIT_VERIFY_PAGE 1000

static const struct db_migration audit_migrations[] = {
    {1,
     "CREATE TABLE audit_log ("
     " seq BIGINT PRIMARY KEY,"
     " ts BIGINT NOT NULL,"
     " principal_kind BIGINT NOT NULL,"
     " principal_id BIGINT NOT NULL,"
     " principal_name TEXT NOT NULL,"
     " action TEXT NOT NULL,"
     " resource TEXT NOT NULL,"
     " outcome TEXT NOT NULL,"
     " request_id TEXT NOT NULL,"
     " prev_hash BLOB NOT NULL,"
     " hash BLOB NOT NULL);"
     "CREATE INDEX audit_log_principal ON audit_log (principal_id, seq);"
     "CREATE INDEX audit_log_request ON audit_log (request_id);"
     "CREATE TABLE audit_head ("
     " id BIGINT PRIMARY KEY,"
     " seq BIGINT NOT NULL,"
     " hash BLOB NOT NULL)",
     NULL},
};

#define AUDIT_COLS                                                                             \
    "SELECT seq, ts, principal_kind, principal_id, principal_name, action, resource, outcome," \
    " request_id, prev_hash, hash FROM audit_log WHERE seq > $1"

/* audit_list's statements by filter: bit 0 principal, bit 1 action, bit 2
 * request id. Fixed text, so values always go through bindings; every
 * statement numbers its parameters without holes (PostgreSQL must see each
 * one used to infer its type). */
static const struct {
    const char *sql;
    int pid, action, reqid; /* parameter index of each filter, 0: absent */
} audit_list_sql[8] = {
    {AUDIT_COLS " ORDER BY seq LIMIT $2", 0, 0, 0},
    {AUDIT_COLS " AND principal_id = $3 ORDER BY seq LIMIT $2", 3, 0, 0},
    {AUDIT_COLS " AND action = $3 ORDER BY seq LIMIT $2", 0, 3, 0},
    {AUDIT_COLS " AND principal_id = $3 AND action = $4 ORDER BY seq LIMIT $2", 3, 4, 0},
    {AUDIT_COLS " AND request_id = $3 ORDER BY seq LIMIT $2", 0, 0, 3},
    {AUDIT_COLS " AND principal_id = $3 AND request_id = $4 ORDER BY seq LIMIT $2", 3, 0, 4},
    {AUDIT_COLS " AND action = $3 AND request_id = $4 ORDER BY seq LIMIT $2", 0, 3, 4},
    {AUDIT_COLS " AND principal_id = $3 AND action = $4 AND request_id = $5 ORDER BY seq"
                " LIMIT $2",
     3, 4, 5},
};

/* The fields that enter the hash, as read from a row or an entry. */
struct audit_fields {
    int64_t seq;
    int64_t ts;
    int64_t kind;
    int64_t pid;
    const char *str[5]; /* principal_name, action, resource, outcome, request_id */
};

static ot_err audit_compute(const struct audit_fields *f, const uint8_t prev[AUDIT_HASH_LEN],
                            uint8_t out[AUDIT_HASH_LEN])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t num[8];
    unsigned len = AUDIT_HASH_LEN;
    ot_err err = OT_OK;
    const int64_t ints[2] = {f->seq, f->ts};

    if (md == NULL) {
        return OT_E_NOMEM;
    }
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(md, AUDIT_DOMAIN, sizeof AUDIT_DOMAIN - 1) != 1
        || EVP_DigestUpdate(md, prev, AUDIT_HASH_LEN) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    for (size_t i = 0; i < 2; i++) {
        ot_put_u32be(num, (uint32_t)((uint64_t)ints[i] >> 32));
        ot_put_u32be(num + 4, (uint32_t)ints[i]);
        if (EVP_DigestUpdate(md, num, 8) != 1) {
            OT_FAIL(OT_E_CRYPTO);
        }
    }
    ot_put_u32be(num, (uint32_t)f->kind);
    if (EVP_DigestUpdate(md, num, 4) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    ot_put_u32be(num, (uint32_t)((uint64_t)f->pid >> 32));
    ot_put_u32be(num + 4, (uint32_t)f->pid);
    if (EVP_DigestUpdate(md, num, 8) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    for (size_t i = 0; i < 5; i++) {
        const char *s = f->str[i] != NULL ? f->str[i] : "";
        size_t n = strlen(s);

        ot_put_u32be(num, (uint32_t)n);
        if (EVP_DigestUpdate(md, num, 4) != 1 || EVP_DigestUpdate(md, s, n) != 1) {
            OT_FAIL(OT_E_CRYPTO);
        }
    }
    if (EVP_DigestFinal_ex(md, out, &len) != 1 || len != AUDIT_HASH_LEN) {
        OT_FAIL(OT_E_CRYPTO);
    }
out:
    EVP_MD_CTX_free(md);
    return err;
}

static void audit_fields_of(const struct audit_entry *e, struct audit_fields *f)
{
    f->seq = e->seq;
    f->ts = e->ts;
    f->kind = (int64_t)e->principal_kind;
    f->pid = e->principal_id;
    f->str[0] = e->principal_name;
    f->str[1] = e->action;
    f->str[2] = e->resource;
    f->str[3] = e->outcome;
    f->str[4] = e->request_id;
}

ot_err audit_hash_entry(struct audit_entry *e)
{
    struct audit_fields f;

    if (e == NULL) {
        return OT_E_ARG;
    }
    audit_fields_of(e, &f);
    return audit_compute(&f, e->prev_hash, e->hash);
}

static bool audit_terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

ot_err audit_migrate(struct db *db)
{
    static const uint8_t zero[AUDIT_HASH_LEN] = {0};
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_migrate(db, "audit", audit_migrations,
                      sizeof audit_migrations / sizeof audit_migrations[0]));
    /* The genesis head: seq 0, hash all zero. Inserted here rather than in
     * the migration because a blob literal is not portable. */
    OT_TRY(db_acquire(db, &c));
    OT_TRY(db_prepare(c,
                      "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, $1)"
                      " ON CONFLICT (id) DO NOTHING",
                      &st));
    OT_TRY(db_bind_blob(st, 1, zero, sizeof zero));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    db_release(c);
    return err;
}

static int64_t audit_now_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return (int64_t)time(NULL) * 1000;
    }
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ot_err audit_append_tx(struct db_conn *c, struct audit_entry *e)
{
    struct db_stmt *st = NULL;
    const uint8_t *h = NULL;
    size_t hn = 0;
    int64_t seq = 0;
    bool row = false;
    ot_err err = OT_OK;

    if (c == NULL || e == NULL || !db_in_txn(c)) {
        return OT_E_ARG;
    }
    if (!audit_terminated(e->principal_name, sizeof e->principal_name)
        || !audit_terminated(e->action, sizeof e->action)
        || !audit_terminated(e->resource, sizeof e->resource)
        || !audit_terminated(e->outcome, sizeof e->outcome)
        || !audit_terminated(e->request_id, sizeof e->request_id)) {
        return OT_E_ARG;
    }
    if (e->ts == 0) {
        e->ts = audit_now_ms();
    }
    /* PostgreSQL: the row lock makes concurrent appenders queue here.
     * SQLite: the transaction already holds the database write lock
     * (BEGIN IMMEDIATE), and SQLite has no FOR UPDATE. */
    OT_TRY(db_prepare(c,
                      db_kind(db_conn_db(c)) == DB_PG
                          ? "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"
                          : "SELECT seq, hash FROM audit_head WHERE id = 1",
                      &st));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_LOG_ERROR("audit head missing: run audit_migrate");
        OT_FAIL(OT_E_CORRUPT);
    }
    OT_TRY(db_col_int64(st, 0, &seq));
    OT_TRY(db_col_blob(st, 1, &h, &hn));
    if (hn != AUDIT_HASH_LEN) {
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(e->prev_hash, h, AUDIT_HASH_LEN);
    db_reset(st);
    st = NULL;
    e->seq = seq + 1;
    OT_TRY(audit_hash_entry(e));

    OT_TRY(db_prepare(c,
                      "INSERT INTO audit_log (seq, ts, principal_kind, principal_id,"
                      " principal_name, action, resource, outcome, request_id, prev_hash, hash)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                      &st));
    OT_TRY(db_bind_int64(st, 1, e->seq));
    OT_TRY(db_bind_int64(st, 2, e->ts));
    OT_TRY(db_bind_int64(st, 3, (int64_t)e->principal_kind));
    OT_TRY(db_bind_int64(st, 4, e->principal_id));
    OT_TRY(db_bind_text(st, 5, e->principal_name));
    OT_TRY(db_bind_text(st, 6, e->action));
    OT_TRY(db_bind_text(st, 7, e->resource));
    OT_TRY(db_bind_text(st, 8, e->outcome));
    OT_TRY(db_bind_text(st, 9, e->request_id));
    OT_TRY(db_bind_blob(st, 10, e->prev_hash, AUDIT_HASH_LEN));
    OT_TRY(db_bind_blob(st, 11, e->hash, AUDIT_HASH_LEN));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;

    OT_TRY(db_prepare(c, "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", &st));
    OT_TRY(db_bind_int64(st, 1, e->seq));
    OT_TRY(db_bind_blob(st, 2, e->hash, AUDIT_HASH_LEN));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) != 1) {
        OT_FAIL(OT_E_CORRUPT);
    }
out:
    db_reset(st);
    return err;
}

static ot_err audit_append_fn(struct db_conn *c, void *arg)
{
    return audit_append_tx(c, arg);
}

ot_err audit_append(struct db *db, struct audit_entry *e)
{
    if (db == NULL || e == NULL) {
        return OT_E_ARG;
    }
    return db_run_tx(db, audit_append_fn, e);
}

/* Reads the row at the statement's cursor into f (strings borrowed from the
 * statement) and its stored hashes. */
static ot_err audit_read_fields(struct db_stmt *st, struct audit_fields *f, const uint8_t **prev,
                                size_t *prev_len, const uint8_t **hash, size_t *hash_len)
{
    ot_err err = OT_OK;

    OT_TRY(db_col_int64(st, 0, &f->seq));
    OT_TRY(db_col_int64(st, 1, &f->ts));
    OT_TRY(db_col_int64(st, 2, &f->kind));
    OT_TRY(db_col_int64(st, 3, &f->pid));
    for (int i = 0; i < 5; i++) {
        OT_TRY(db_col_text(st, 4 + i, &f->str[i]));
    }
    OT_TRY(db_col_blob(st, 9, prev, prev_len));
    OT_TRY(db_col_blob(st, 10, hash, hash_len));
out:
    return err;
}

ot_err audit_head(struct db *db, int64_t *seq, uint8_t hash[AUDIT_HASH_LEN])
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    const uint8_t *h = NULL;
    size_t hn = 0;
    bool row = false;
    ot_err err = OT_OK;

    if (db == NULL || seq == NULL || hash == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(db_acquire(db, &c));
    OT_TRY(db_prepare(c, "SELECT seq, hash FROM audit_head WHERE id = 1", &st));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_CORRUPT);
    }
    OT_TRY(db_col_int64(st, 0, seq));
    OT_TRY(db_col_blob(st, 1, &h, &hn));
    if (hn != AUDIT_HASH_LEN) {
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(hash, h, AUDIT_HASH_LEN);
out:
    db_reset(st);
    db_release(c);
    return err;
}

ot_err audit_verify(struct db *db, int64_t *bad_seq, int64_t *checked)
{
    uint8_t running[AUDIT_HASH_LEN] = {0};
    uint8_t head_hash[AUDIT_HASH_LEN];
    int64_t head_seq = 0;
    int64_t expect = 1; /* next seq the chain needs */
    int64_t bad = 0;
    int64_t count = 0;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool more = true;
    ot_err err = OT_OK;

    if (bad_seq != NULL) {
        *bad_seq = 0;
    }
    if (checked != NULL) {
        *checked = 0;
    }
    if (db == NULL) {
        return OT_E_ARG;
    }
    /* Read the head first: rows appended after this point are not part of
     * the chain being checked (they may be read below and are then
     * verified too, which is fine as long as the chain holds). */
    OT_TRY(audit_head(db, &head_seq, head_hash));
    OT_TRY(db_acquire(db, &c));
    while (more && bad == 0) {
        bool row = false;
        int n = 0;

        OT_TRY(db_prepare(c, AUDIT_COLS " AND seq <= $3 ORDER BY seq LIMIT $2", &st));
        OT_TRY(db_bind_int64(st, 1, expect - 1));
        OT_TRY(db_bind_int64(st, 2, AUDIT_VERIFY_PAGE));
        OT_TRY(db_bind_int64(st, 3, head_seq));
        for (;;) {
            struct audit_fields f;
            const uint8_t *prev = NULL;
            const uint8_t *hash = NULL;
            size_t prev_len = 0;
            size_t hash_len = 0;
            uint8_t want[AUDIT_HASH_LEN];

            OT_TRY(db_step(st, &row));
            if (!row) {
                break;
            }
            n++;
            OT_TRY(audit_read_fields(st, &f, &prev, &prev_len, &hash, &hash_len));
            if (f.seq != expect) {
                bad = expect; /* a gap: that row was deleted (or renumbered) */
                OT_LOG_ERROR("audit chain broken: row %lld missing", (long long)expect);
                break;
            }
            if (prev_len != AUDIT_HASH_LEN || memcmp(prev, running, AUDIT_HASH_LEN) != 0) {
                /* Not chained to its predecessor. If this row is intact
                 * under the prev_hash it stores, the predecessor is the
                 * row that changed (rewritten together with its hash);
                 * otherwise this row was edited, moved or reordered. */
                bad = f.seq;
                if (f.seq > 1 && prev_len == AUDIT_HASH_LEN && hash_len == AUDIT_HASH_LEN) {
                    OT_TRY(audit_compute(&f, prev, want));
                    if (memcmp(hash, want, AUDIT_HASH_LEN) == 0) {
                        bad = f.seq - 1;
                    }
                }
                OT_LOG_ERROR("audit chain broken at row %lld (row %lld does not follow its"
                             " predecessor)",
                             (long long)bad, (long long)f.seq);
                break;
            }
            OT_TRY(audit_compute(&f, running, want));
            if (hash_len != AUDIT_HASH_LEN || memcmp(hash, want, AUDIT_HASH_LEN) != 0) {
                bad = f.seq; /* a field was edited */
                OT_LOG_ERROR("audit chain broken: row %lld was modified", (long long)f.seq);
                break;
            }
            memcpy(running, want, AUDIT_HASH_LEN);
            expect++;
            count++;
        }
        db_reset(st);
        st = NULL;
        more = n == AUDIT_VERIFY_PAGE;
    }
    if (bad == 0 && expect - 1 != head_seq) {
        bad = expect; /* the newest rows were deleted */
        OT_LOG_ERROR("audit chain broken: head at %lld, rows end at %lld", (long long)head_seq,
                     (long long)(expect - 1));
    }
    if (bad == 0 && memcmp(running, head_hash, AUDIT_HASH_LEN) != 0) {
        bad = head_seq; /* the last row was rewritten with a consistent hash */
        OT_LOG_ERROR("audit chain broken: head hash does not match row %lld", (long long)head_seq);
    }
    if (bad != 0) {
        err = OT_E_CORRUPT;
    } else {
        OT_LOG_INFO("audit chain verified rows=%lld", (long long)count);
    }
    if (bad_seq != NULL) {
        *bad_seq = bad;
    }
    if (checked != NULL) {
        *checked = count;
    }
out:
    db_reset(st);
    db_release(c);
    return err;
}

static ot_err audit_copy_text(struct db_stmt *st, int col, char *dst, size_t cap)
{
    size_t len = cap;
    ot_err err = db_col_text_copy(st, col, dst, &len);

    return err == OT_E_BUF_SMALL ? OT_E_CORRUPT : err; /* longer than any append writes */
}

ot_err audit_list(struct db *db, const struct audit_query *q, struct audit_entry **out, size_t *n,
                  int64_t *next_cursor)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct audit_entry *v = NULL;
    size_t limit = 0;
    size_t cnt = 0;
    unsigned variant = 0;
    bool row = false;
    ot_err err = OT_OK;

    if (out != NULL) {
        *out = NULL;
    }
    if (n != NULL) {
        *n = 0;
    }
    if (next_cursor != NULL) {
        *next_cursor = 0;
    }
    if (db == NULL || q == NULL || out == NULL || n == NULL || q->after_seq < 0
        || q->limit > AUDIT_LIST_MAX) {
        return OT_E_ARG;
    }
    limit = q->limit == 0 ? AUDIT_LIST_DEF : q->limit;
    variant = (q->by_principal ? 1u : 0u) | (q->action != NULL ? 2u : 0u)
              | (q->request_id != NULL ? 4u : 0u);
    v = calloc(limit, sizeof *v);
    if (v == NULL) {
        return OT_E_NOMEM;
    }
    OT_TRY(db_acquire(db, &c));
    OT_TRY(db_prepare(c, audit_list_sql[variant].sql, &st));
    OT_TRY(db_bind_int64(st, 1, q->after_seq));
    OT_TRY(db_bind_int64(st, 2, (int64_t)limit));
    if (q->by_principal) {
        OT_TRY(db_bind_int64(st, audit_list_sql[variant].pid, q->principal_id));
    }
    if (q->action != NULL) {
        OT_TRY(db_bind_text(st, audit_list_sql[variant].action, q->action));
    }
    if (q->request_id != NULL) {
        OT_TRY(db_bind_text(st, audit_list_sql[variant].reqid, q->request_id));
    }
    while (cnt < limit) {
        struct audit_entry *e = &v[cnt];
        const uint8_t *h = NULL;
        size_t hn = 0;
        int64_t kind = 0;

        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        OT_TRY(db_col_int64(st, 0, &e->seq));
        OT_TRY(db_col_int64(st, 1, &e->ts));
        OT_TRY(db_col_int64(st, 2, &kind));
        e->principal_kind = (unsigned)kind;
        OT_TRY(db_col_int64(st, 3, &e->principal_id));
        OT_TRY(audit_copy_text(st, 4, e->principal_name, sizeof e->principal_name));
        OT_TRY(audit_copy_text(st, 5, e->action, sizeof e->action));
        OT_TRY(audit_copy_text(st, 6, e->resource, sizeof e->resource));
        OT_TRY(audit_copy_text(st, 7, e->outcome, sizeof e->outcome));
        OT_TRY(audit_copy_text(st, 8, e->request_id, sizeof e->request_id));
        OT_TRY(db_col_blob(st, 9, &h, &hn));
        if (hn == AUDIT_HASH_LEN) {
            memcpy(e->prev_hash, h, AUDIT_HASH_LEN);
        }
        OT_TRY(db_col_blob(st, 10, &h, &hn));
        if (hn == AUDIT_HASH_LEN) {
            memcpy(e->hash, h, AUDIT_HASH_LEN);
        }
        cnt++;
    }
    if (cnt == limit && next_cursor != NULL) {
        *next_cursor = v[cnt - 1].seq;
    }
    if (cnt > 0) {
        *out = v;
        v = NULL;
    }
    *n = cnt;
out:
    db_reset(st);
    db_release(c);
    free(v);
    return err;
}
