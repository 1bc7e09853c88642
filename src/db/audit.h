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
 * Appends do not serialise writers (issue 8 point 6). audit_append_tx
 * inserts the row unsealed (no seq, no hashes) in the caller's transaction
 * and takes no shared lock: on PostgreSQL into the log, on SQLite into
 * host_audit_pending, a table without an index (the change's commit writes
 * one page for its row instead of the log's, its indexes' and the head's).
 * audit_append groups concurrent callers' rows into one transaction (group
 * commit) and returns once the one holding the row committed; on SQLite
 * that transaction, which holds the only write lock, moves the pending rows
 * into the chain first and seals its own rows at once. A sealer (audit_seal, run by a sealer thread
 * per node and by every reader before it reads) links committed unsealed rows into the chain in
 * insertion order, in one transaction that holds the head row (SELECT ... FOR UPDATE on PostgreSQL,
 * so the sealers of every node queue there and only they wait; on SQLite the write transaction
 * itself is exclusive). Seq numbers start at 1 with no gaps, in seal order; listing and
 * verification go by seq. A row is protected by the chain from its seal on (within the sealer's
 * interval of its commit); an unsealed row is not yet listed.
 *
 * Text is untrusted (a request path, a token label): appends store each
 * string field in its clean form (audit_text_clean), and audit_list shows
 * rows stored before that repaired, so one row never fails a page.
 *
 * All functions are thread-safe (they use the db pool). Tables
 * (host_audit_log, host_audit_head, host_audit_pending) live in the "audit"
 * migration set, applied by audit_migrate().
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
    int64_t id;              /* insertion id, set by audit_append (0 from SQLite's _tx) */
    int64_t seq;             /* chain position: 0 until sealed (audit_append sets 0) */
    int64_t ts;              /* unix milliseconds; 0 on append: now */
    unsigned principal_kind; /* authstore_kind bit; 0: unauthenticated */
    int64_t principal_id;    /* 0: unauthenticated */
    char principal_name[AUDIT_NAME_MAX + 1];
    char action[AUDIT_ACTION_MAX + 1];
    char resource[AUDIT_RESOURCE_MAX + 1];
    char outcome[AUDIT_OUTCOME_MAX + 1];
    char request_id[AUDIT_REQID_MAX + 1];
    uint8_t prev_hash[AUDIT_HASH_LEN]; /* set by the seal */
    uint8_t hash[AUDIT_HASH_LEN];      /* set by the seal */
};

/* Applies the "audit" migrations (idempotent). */
ot_err audit_migrate(struct db *db);

/* Appends e in a transaction of its own (shared with concurrent callers);
 * fills e->id and e->ts (if 0), e->seq (0 while unsealed: PostgreSQL) and
 * replaces each string field by its clean form (what is stored). The string fields must be
 * NUL-terminated within their arrays (OT_E_ARG otherwise). */
ot_err audit_append(struct db *db, struct audit_entry *e);
/* The same inside a transaction the caller has open on conn (so the audit
 * row commits or rolls back with the change it records), unsealed (e->seq
 * 0) on both back ends: the sealer links it once committed. */
ot_err audit_append_tx(struct db_conn *conn, struct audit_entry *e);

/* Queues e to be appended by the node's sealer (within its interval), or by
 * the next audit_seal / audit_list / audit_head / audit_verify of db, in one
 * transaction with the other queued rows: the caller does not wait for a
 * commit. For rows that record a request rather than a change (the change
 * has its own row in its transaction): a request log line, a denial, an
 * unauthenticated attempt, so a flood of them costs no transaction each.
 * A row is lost only if the process dies before the flush. With more than
 * 8192 rows queued (storage slower than requests) it writes e at once, as
 * audit_append does. e->ts 0: now. OT_E_ARG as audit_append. */
ot_err audit_enqueue(struct db *db, const struct audit_entry *e);

/* Seals every committed unsealed row (in insertion order) in transactions
 * of up to 1000 rows; *sealed (may be NULL) = rows sealed. Cheap when there
 * is nothing to seal (one index lookup, no lock). audit_list, audit_head and
 * audit_verify call it first, so they see every row committed before them. */
ot_err audit_seal(struct db *db, int64_t *sealed);

/* The node's sealer: a thread that runs audit_seal (queued rows written,
 * then sealed) every interval_ms (0: AUDIT_SEAL_INTERVAL_MS) and when
 * kicked. Stop seals once more, then joins. Start one per process after audit_migrate. */
#define AUDIT_SEAL_INTERVAL_MS 50u
struct audit_sealer;
ot_err audit_sealer_start(struct db *db, unsigned interval_ms, struct audit_sealer **out);
/* Wakes the sealer now (e.g. after committing an audited change, so a live
 * stream sees it at once). NULL: no-op. */
void audit_sealer_kick(struct audit_sealer *s);
void audit_sealer_stop(struct audit_sealer *s); /* NULL: no-op */

/* Writes src into dst (capacity cap, always NUL-terminated) in the clean
 * form every audit text is stored in: ot_utf8_escape (core/utf8.h), without
 * an ellipsis. Returns true if dst differs from src. */
bool audit_text_clean(char *dst, size_t cap, const char *src);

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
