/* Idempotency records (see idem.h). A record older than the retention is
 * treated as absent by idem_get and may be replaced by idem_put, so a client
 * reusing a key after a day starts afresh even before idem_purge ran.
 */
#include "db/idem.h"

#define OT_LOG_COMPONENT "db.idem"
#include "core/buf.h"
#include "core/log.h"
#include "db/db.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IDEM_DEFAULT_CTYPE "application/json"

static const struct db_migration idem_migrations[] = {
    {1,
     "CREATE TABLE idem_records ("
     " principal_id BIGINT NOT NULL,"
     " idem_key TEXT NOT NULL,"
     " request_hash BLOB NOT NULL,"
     " status BIGINT NOT NULL,"
     " content_type TEXT NOT NULL,"
     " body BLOB NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " PRIMARY KEY (principal_id, idem_key));"
     "CREATE INDEX idem_records_created ON idem_records (created_at)",
     NULL},
    /* The host's tables carry its prefix (issue 8 point 4); the data stays. */
    {2, "ALTER TABLE idem_records RENAME TO host_idem_records", NULL},
};

ot_err idem_migrate(struct db *db)
{
    return db_migrate(db, "idem", idem_migrations,
                      sizeof idem_migrations / sizeof idem_migrations[0]);
}

ot_err idem_key_check(const char *key)
{
    size_t n = 0;

    if (key == NULL) {
        return OT_E_ARG;
    }
    for (; key[n] != '\0'; n++) {
        if (n >= IDEM_KEY_MAX) {
            return OT_E_TOO_LONG;
        }
        if ((unsigned char)key[n] < 0x20 || (unsigned char)key[n] > 0x7e) {
            return OT_E_FORMAT;
        }
    }
    return n == 0 ? OT_E_FORMAT : OT_OK;
}

void idem_rec_clear(struct idem_rec *rec)
{
    if (rec == NULL) {
        return;
    }
    free(rec->body);
    memset(rec, 0, sizeof *rec);
}

static int64_t idem_cutoff(void)
{
    return (int64_t)time(NULL) - IDEM_DEFAULT_KEEP;
}

/* Columns: request_hash, status, content_type, body, created_at. */
static ot_err idem_read(struct db_stmt *st, int64_t principal_id, const char *key,
                        struct idem_rec *out)
{
    const uint8_t *h = NULL;
    const uint8_t *body = NULL;
    size_t hn = 0;
    size_t bn = 0;
    size_t len = sizeof out->content_type;
    int64_t status = 0;
    ot_err err = OT_OK;

    memset(out, 0, sizeof *out);
    out->principal_id = principal_id;
    memcpy(out->key, key, strlen(key) + 1);
    OT_TRY(db_col_blob(st, 0, &h, &hn));
    if (hn != IDEM_HASH_LEN) {
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(out->request_hash, h, IDEM_HASH_LEN);
    OT_TRY(db_col_int64(st, 1, &status));
    if (status < 100 || status > 599) {
        OT_FAIL(OT_E_CORRUPT);
    }
    out->status = (int)status;
    err = db_col_text_copy(st, 2, out->content_type, &len);
    if (err == OT_E_BUF_SMALL) {
        OT_FAIL(OT_E_CORRUPT);
    }
    OT_TRY(err);
    OT_TRY(db_col_blob(st, 3, &body, &bn));
    if (bn > IDEM_BODY_MAX) {
        OT_FAIL(OT_E_CORRUPT);
    }
    out->body = malloc(bn + 1);
    if (out->body == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (bn > 0) {
        memcpy(out->body, body, bn);
    }
    out->body[bn] = '\0';
    out->body_len = bn;
    OT_TRY(db_col_int64(st, 4, &out->created_at));
out:
    if (err != OT_OK) {
        idem_rec_clear(out);
    }
    return err;
}

static ot_err idem_get_conn(struct db_conn *c, int64_t principal_id, const char *key,
                            struct idem_rec *out)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "SELECT request_hash, status, content_type, body, created_at"
                      " FROM host_idem_records WHERE principal_id = $1 AND idem_key = $2"
                      " AND created_at >= $3",
                      &st));
    OT_TRY(db_bind_int64(st, 1, principal_id));
    OT_TRY(db_bind_text(st, 2, key));
    OT_TRY(db_bind_int64(st, 3, idem_cutoff()));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(idem_read(st, principal_id, key, out));
out:
    db_reset(st);
    return err;
}

ot_err idem_get(struct db *db, int64_t principal_id, const char *key, struct idem_rec *out)
{
    struct db_conn *c = NULL;
    ot_err err = OT_OK;

    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    if (db == NULL || out == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(idem_key_check(key));
    OT_TRY(db_acquire(db, &c));
    OT_TRY(idem_get_conn(c, principal_id, key, out));
out:
    db_release(c);
    return err;
}

/* Checks idem_put's arguments; content_type NULL becomes the default. */
static ot_err idem_put_args(const char *key, const uint8_t *request_hash, int status,
                            const char **content_type, const char *body, size_t body_len)
{
    if (request_hash == NULL || status < 100 || status > 599 || (body == NULL && body_len != 0)) {
        return OT_E_ARG;
    }
    if (body_len > IDEM_BODY_MAX) {
        return OT_E_LIMIT;
    }
    if (*content_type == NULL) {
        *content_type = IDEM_DEFAULT_CTYPE;
    }
    if (strlen(*content_type) > IDEM_CTYPE_MAX) {
        return OT_E_TOO_LONG;
    }
    return idem_key_check(key);
}

/* idem_put on c, in its transaction if one is open. Never a unique
 * violation (ON CONFLICT), so a PostgreSQL transaction stays usable. */
static ot_err idem_put_conn(struct db_conn *c, int64_t principal_id, const char *key,
                            const uint8_t request_hash[IDEM_HASH_LEN], int status,
                            const char *content_type, const char *body, size_t body_len,
                            struct idem_rec *existing)
{
    struct db_stmt *st = NULL;
    bool row = false;
    int64_t changed = 0;
    ot_err err = OT_OK;

    /* First writer wins; a stale record (past retention, not yet purged)
     * is replaced as if it were absent. */
    OT_TRY(db_prepare(c,
                      "INSERT INTO host_idem_records (principal_id, idem_key, request_hash, status,"
                      " content_type, body, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                      " ON CONFLICT (principal_id, idem_key) DO UPDATE SET"
                      " request_hash = excluded.request_hash, status = excluded.status,"
                      " content_type = excluded.content_type, body = excluded.body,"
                      " created_at = excluded.created_at WHERE host_idem_records.created_at < $8",
                      &st));
    OT_TRY(db_bind_int64(st, 1, principal_id));
    OT_TRY(db_bind_text(st, 2, key));
    OT_TRY(db_bind_blob(st, 3, request_hash, IDEM_HASH_LEN));
    OT_TRY(db_bind_int64(st, 4, status));
    OT_TRY(db_bind_text(st, 5, content_type));
    OT_TRY(db_bind_blob(st, 6, body, body_len));
    OT_TRY(db_bind_int64(st, 7, (int64_t)time(NULL)));
    OT_TRY(db_bind_int64(st, 8, idem_cutoff()));
    OT_TRY(db_step(st, &row));
    changed = db_changes(st);
    db_reset(st);
    st = NULL;
    if (changed == 1) {
        goto out;
    }
    if (existing != NULL) {
        err = idem_get_conn(c, principal_id, key, existing);
        if (err == OT_E_NOT_FOUND) {
            /* purged between the insert and this read: the caller retries */
            OT_FAIL(OT_E_CONFLICT);
        }
        OT_TRY(err);
    }
    err = OT_E_CONFLICT;
out:
    db_reset(st);
    return err;
}

ot_err idem_put(struct db *db, int64_t principal_id, const char *key,
                const uint8_t request_hash[IDEM_HASH_LEN], int status, const char *content_type,
                const char *body, size_t body_len, struct idem_rec *existing)
{
    struct db_conn *c = NULL;
    ot_err err = OT_OK;

    if (existing != NULL) {
        memset(existing, 0, sizeof *existing);
    }
    if (db == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(idem_put_args(key, request_hash, status, &content_type, body, body_len));
    OT_TRY(db_acquire(db, &c));
    OT_TRY(idem_put_conn(c, principal_id, key, request_hash, status, content_type, body, body_len,
                         existing));
out:
    db_release(c);
    return err;
}

ot_err idem_put_tx(struct db_conn *c, int64_t principal_id, const char *key,
                   const uint8_t request_hash[IDEM_HASH_LEN], int status, const char *content_type,
                   const char *body, size_t body_len, struct idem_rec *existing)
{
    ot_err err = OT_OK;

    if (existing != NULL) {
        memset(existing, 0, sizeof *existing);
    }
    if (c == NULL || !db_in_txn(c)) {
        return OT_E_ARG;
    }
    OT_TRY(idem_put_args(key, request_hash, status, &content_type, body, body_len));
    OT_TRY(idem_put_conn(c, principal_id, key, request_hash, status, content_type, body, body_len,
                         existing));
out:
    return err;
}

ot_err idem_lookup(struct db *db, int64_t principal_id, const char *key,
                   uint8_t req_hash[IDEM_HASH_LEN], int *status, char **body, size_t *body_len)
{
    struct idem_rec rec;
    ot_err err = OT_OK;

    if (req_hash == NULL || status == NULL || body == NULL || body_len == NULL) {
        return OT_E_ARG;
    }
    *body = NULL;
    *body_len = 0;
    OT_TRY(idem_get(db, principal_id, key, &rec));
    memcpy(req_hash, rec.request_hash, IDEM_HASH_LEN);
    *status = rec.status;
    if (rec.body_len > 0) {
        *body = rec.body;
        *body_len = rec.body_len;
        rec.body = NULL;
    }
    idem_rec_clear(&rec);
out:
    return err;
}

ot_err idem_store(struct db *db, int64_t principal_id, const char *key,
                  const uint8_t req_hash[IDEM_HASH_LEN], int status, const char *body,
                  size_t body_len)
{
    ot_err err = idem_put(db, principal_id, key, req_hash, status, NULL, body, body_len, NULL);

    return err == OT_E_CONFLICT ? OT_OK : err;
}

ot_err idem_purge(struct db *db, int64_t keep, size_t *deleted)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    if (deleted != NULL) {
        *deleted = 0;
    }
    if (db == NULL) {
        return OT_E_ARG;
    }
    if (keep <= 0) {
        keep = IDEM_DEFAULT_KEEP;
    }
    OT_TRY(db_acquire(db, &c));
    OT_TRY(db_prepare(c, "DELETE FROM host_idem_records WHERE created_at < $1", &st));
    OT_TRY(db_bind_int64(st, 1, (int64_t)time(NULL) - keep));
    OT_TRY(db_step(st, &row));
    if (deleted != NULL) {
        *deleted = (size_t)db_changes(st);
    }
    if (db_changes(st) > 0) {
        OT_LOG_INFO("idempotency records purged count=%lld", (long long)db_changes(st));
    }
out:
    db_reset(st);
    db_release(c);
    return err;
}
