/* Idempotency records for the Idempotency-Key header (issue 4 point 3).
 *
 * One row per (principal_id, key): the SHA-256 of the first request (method,
 * path, query arguments and body, as the net layer computes it: http.h), and
 * the response it got
 * (status, body). A replay with the same hash returns the stored response; a
 * replay with another hash is the caller's 422. Rows expire after a retention
 * period (idem_purge).
 *
 * Who writes the record: the net layer stores a handler's 2xx answer after
 * the handler returned (idem_store, through tsmd's ops.idem_put), which is
 * after the handler's commit: a crash in between leaves a change without
 * its record, and the retry runs the handler again. A handler whose change
 * is one transaction stores the record itself in that transaction with
 * idem_put_tx (and tells net so: net_req_idem_stored), so the change and
 * the answer replayed for it commit together. Both write under the same
 * scope: tsmd keys records by the principal's id.
 *
 * Thread-safe (uses the db pool). Tables live in the "idem" migration set,
 * applied by idem_migrate().
 */
#ifndef OT_DB_IDEM_H
#define OT_DB_IDEM_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

struct db;
struct db_conn;

#define IDEM_KEY_MAX      255u /* bytes of an Idempotency-Key value */
#define IDEM_HASH_LEN     32u
#define IDEM_BODY_MAX     ((size_t)1024 * 1024) /* largest response body stored */
#define IDEM_CTYPE_MAX    127u
#define IDEM_DEFAULT_KEEP ((int64_t)24 * 3600) /* retention, seconds */

struct idem_rec {
    int64_t principal_id;
    char key[IDEM_KEY_MAX + 1];
    uint8_t request_hash[IDEM_HASH_LEN];
    int status; /* HTTP status of the first answer */
    char content_type[IDEM_CTYPE_MAX + 1];
    char *body; /* owned, NUL-terminated (for convenience), body_len bytes */
    size_t body_len;
    int64_t created_at; /* unix seconds */
};

/* Applies the "idem" migrations (idempotent). */
ot_err idem_migrate(struct db *db);

/* Checks a key: 1..IDEM_KEY_MAX printable ASCII bytes (0x20..0x7e).
 * OT_E_FORMAT / OT_E_TOO_LONG otherwise. */
ot_err idem_key_check(const char *key);

/* Looks up (principal_id, key). OT_E_NOT_FOUND if absent (or older than
 * IDEM_DEFAULT_KEEP). *out is filled; release with idem_rec_clear. */
ot_err idem_get(struct db *db, int64_t principal_id, const char *key, struct idem_rec *out);

/* Stores the first answer for (principal_id, key). OT_OK when stored. If a
 * record exists already (someone stored first), returns OT_E_CONFLICT and
 * fills *existing (if not NULL) with the stored record; the caller compares
 * existing->request_hash and answers from it. content_type may be NULL
 * ("application/json"). body may be NULL when body_len is 0; body_len at most
 * IDEM_BODY_MAX (OT_E_LIMIT). */
ot_err idem_put(struct db *db, int64_t principal_id, const char *key,
                const uint8_t request_hash[IDEM_HASH_LEN], int status, const char *content_type,
                const char *body, size_t body_len, struct idem_rec *existing);
/* The same inside the transaction the caller has open on c (OT_E_ARG
 * without one), so the record commits or rolls back with the change whose
 * answer it keeps. OT_E_CONFLICT leaves the transaction usable (no unique
 * violation happens); the caller then rolls back its change, since another
 * request with this key came first. On PostgreSQL a concurrent transaction
 * holding the same key makes this wait for its end. */
ot_err idem_put_tx(struct db_conn *c, int64_t principal_id, const char *key,
                   const uint8_t request_hash[IDEM_HASH_LEN], int status, const char *content_type,
                   const char *body, size_t body_len, struct idem_rec *existing);

/* The shapes of net/http.h's ops.idem_get / ops.idem_put without the net
 * types (db does not include net): tsmd's callbacks pass principal->id.
 * idem_lookup: OT_OK with *status, req_hash and *body (malloc'd, free() it;
 * NULL when *body_len is 0) set, or OT_E_NOT_FOUND. idem_store: OT_OK when
 * stored or when a record existed already (OT_E_CONFLICT is folded into OT_OK
 * as the net layer ignores it; the stored record wins). */
ot_err idem_lookup(struct db *db, int64_t principal_id, const char *key,
                   uint8_t req_hash[IDEM_HASH_LEN], int *status, char **body, size_t *body_len);
ot_err idem_store(struct db *db, int64_t principal_id, const char *key,
                  const uint8_t req_hash[IDEM_HASH_LEN], int status, const char *body,
                  size_t body_len);

/* Frees out->body and zeroes the record. NULL-safe. */
void idem_rec_clear(struct idem_rec *rec);

/* Deletes records created before now - keep seconds (keep <= 0:
 * IDEM_DEFAULT_KEEP). *deleted (may be NULL) = rows removed. */
ot_err idem_purge(struct db *db, int64_t keep, size_t *deleted);

#endif
