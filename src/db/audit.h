/* Append-only, hash-chained audit log (issue 4 point 5, DESIGN.md 6).
 *
 * Each row i carries hash_i = SHA-256("opentsm-audit-v1" || hash_{i-1} ||
 * enc(row_i)), where hash_0 is 32 zero bytes and enc() is the canonical
 * encoding of the row's fields in this order: seq and ts as 8-byte
 * big-endian, principal_kind as 4-byte big-endian, principal_id as 8-byte
 * big-endian, then principal_name, action, resource, outcome, request_id,
 * each as a 4-byte big-endian length followed by its bytes. A one-row head
 * table holds the last seq and hash, so deleting rows at the end is
 * detectable too.
 *
 * Appends are serialised: one writer at a time extends the chain (the head
 * row is locked: SELECT ... FOR UPDATE on PostgreSQL; on SQLite the write
 * transaction itself is exclusive). Seq numbers start at 1 with no gaps.
 *
 * All functions are thread-safe (they use the db pool). Tables live in the
 * "audit" migration set, applied by audit_migrate().
 */
#ifndef OT_DB_AUDIT_H
#define OT_DB_AUDIT_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;
struct db_conn;

#define AUDIT_HASH_LEN     32u
#define AUDIT_NAME_MAX     63u  /* principal_name */
#define AUDIT_ACTION_MAX   127u /* "se.import", "GET /tsm/v1/secure-elements/{id}" */
#define AUDIT_RESOURCE_MAX 255u /* "/tsm/v1/secure-elements/42" */
#define AUDIT_OUTCOME_MAX  63u  /* "ok", "200", "404 not_found" ... free text */
#define AUDIT_REQID_MAX    63u
#define AUDIT_LIST_MAX     1000u /* most rows one audit_list call returns */

struct audit_entry {
    int64_t seq;             /* set by audit_append */
    int64_t ts;              /* unix milliseconds; 0 on append: now */
    unsigned principal_kind; /* authstore_kind bit; 0: unauthenticated */
    int64_t principal_id;    /* 0: unauthenticated */
    char principal_name[AUDIT_NAME_MAX + 1];
    char action[AUDIT_ACTION_MAX + 1];
    char resource[AUDIT_RESOURCE_MAX + 1];
    char outcome[AUDIT_OUTCOME_MAX + 1];
    char request_id[AUDIT_REQID_MAX + 1];
    uint8_t prev_hash[AUDIT_HASH_LEN]; /* set by audit_append */
    uint8_t hash[AUDIT_HASH_LEN];      /* set by audit_append */
};

/* Applies the "audit" migrations (idempotent). */
ot_err audit_migrate(struct db *db);

/* Appends e in its own transaction; fills e->seq, e->ts (if 0), e->prev_hash
 * and e->hash. The string fields must be NUL-terminated within their arrays
 * (OT_E_ARG otherwise). */
ot_err audit_append(struct db *db, struct audit_entry *e);
/* The same inside a transaction the caller has open on conn (so the audit
 * row commits or rolls back with the change it records). On SQLite the
 * caller's transaction must be able to write (it is, once it has written). */
ot_err audit_append_tx(struct db_conn *conn, struct audit_entry *e);

/* Recomputes the whole chain. OT_OK if intact (*checked = rows checked, may
 * be NULL). OT_E_CORRUPT if not, with *bad_seq = the first row that does not
 * verify: an edited row names itself (also when its hash was recomputed to
 * match: its successor no longer follows it); a deleted row names the missing seq;
 * rows deleted at the end name the first missing seq after the last row;
 * reordered rows name the first row out of place. *bad_seq = 0 when OT_OK. */
ot_err audit_verify(struct db *db, int64_t *bad_seq, int64_t *checked);

/* The chain's head: the last seq (0: empty log) and its hash (all zero when
 * empty). Publish it elsewhere (a ticket, a log line) to anchor the chain: a
 * hash chain alone cannot detect a rewrite of every row and the head. */
ot_err audit_head(struct db *db, int64_t *seq, uint8_t hash[AUDIT_HASH_LEN]);

/* Query for audit_list; zero-initialise and set what you need. */
struct audit_query {
    int64_t after_seq;      /* cursor: rows with seq > after_seq (0: from the start) */
    size_t limit;           /* 1..AUDIT_LIST_MAX; 0: 100 */
    bool by_principal;      /* only rows of principal_id */
    int64_t principal_id;   /* with by_principal */
    const char *action;     /* NULL: any; else exact match */
    const char *request_id; /* NULL: any; else exact match */
};

/* Lists rows in seq order. *out is allocated (free with free(); NULL when
 * *n == 0). *next_cursor = the seq of the last row returned if more rows
 * may follow, 0 when the list is complete. */
ot_err audit_list(struct db *db, const struct audit_query *q, struct audit_entry **out, size_t *n,
                  int64_t *next_cursor);

/* Canonical hash of one row given its prev_hash (exposed for tests and for
 * tsmctl's offline verification). Fills e->hash. */
ot_err audit_hash_entry(struct audit_entry *e);

#endif
