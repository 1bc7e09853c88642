/* The service kit: what every handler of every service shares (DESIGN.md 1,
 * STYLE.md 16). A handler reads like the request's story: parse (svc_body_obj,
 * svc_page_of_query, svc_id_of_path), authorise (svc_authz), act in one
 * transaction with its audit row and its idempotent answer (svc_tx_begin,
 * svc_audit, svc_tx_commit), answer (svc_send_list, svc_fail).
 *
 * One struct svc_kit per host, shared by every service instance; it borrows
 * the database and the auth store. Denials are queued for the node's audit
 * sealer (audit_enqueue), off the request path, so a resource owned by
 * another principal costs the same as a missing one (issue 9 point 4).
 *
 * Thread-safety: every function may be called from the server's worker
 * threads concurrently; svc_kit_new/free from one thread.
 */
#ifndef OT_SVC_KIT_H
#define OT_SVC_KIT_H

#include "core/err.h"
#include "net/http.h"
#include "net/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;
struct db_conn;
struct db_stmt;
struct authstore;
struct svc_kit;
struct svc_events;

#define SVC_LIST_DEF    100u  /* default page size of the listings */
#define SVC_LIST_MAX    1000u /* largest page */
#define SVC_IDEM_HEADER "Idempotency-Key"

/* db and auth are borrowed and must outlive the kit. */
ot_err svc_kit_new(struct db *db, struct authstore *auth, struct svc_kit **out);
/* Writes what is queued; NULL-safe. */
void svc_kit_free(struct svc_kit *k);
/* Returns once every denial queued before the call is in the audit log (or
 * failed and was logged): audit_seal. */
void svc_kit_flush(struct svc_kit *k);
struct db *svc_kit_db(const struct svc_kit *k);
struct authstore *svc_kit_auth(const struct svc_kit *k);
struct svc_events *svc_kit_events(const struct svc_kit *k); /* svc/events.h */

/* ---- audit and authorisation ------------------------------------------ */

/* Records one service-level event (state change or denial) in the audit
 * log, inside c's transaction when c is not NULL, else in a transaction of
 * its own. A failure is logged and returned: a caller whose change shares
 * c's transaction rolls it back (no change commits without its audit row). */
ot_err svc_audit(struct svc_kit *k, struct db_conn *c, const struct net_req *req,
                 const char *action, const char *resource, const char *outcome);
/* The same in a transaction of its own on c, a connection the caller holds
 * with no transaction open: a refusal found while holding one (a second
 * connection may not be free: with db.pool 1 that waits for ever). */
ot_err svc_audit_on(struct svc_kit *k, struct db_conn *c, const struct net_req *req,
                    const char *action, const char *resource, const char *outcome);

/* The audit row svc_audit would write for req (its principal and request
 * id), for a caller that writes it later, when req is gone (audit_enqueue:
 * e.g. the refusal of a held answer). */
struct audit_entry;
void svc_audit_entry(const struct net_req *req, const char *action, const char *resource,
                     const char *outcome, struct audit_entry *e);

enum svc_access {
    SVC_ACC_SHARED, /* data every service provider may read */
    SVC_ACC_OWNED,  /* a resource owned by one principal */
};

/* The one ownership check. OT_OK when the caller may touch a resource owned
 * by owner (a principal id; ignored for SVC_ACC_SHARED). Operators may touch
 * everything; others only what they own (and service providers the shared
 * data). Anything else is OT_E_NOT_FOUND - the answer of a missing resource,
 * so existence does not leak - and is audited as a denial through the queue
 * (audit_enqueue: off the request path, so it costs what a missing
 * resource costs). */
ot_err svc_authz(struct svc_kit *k, const struct net_req *req, enum svc_access acc, int64_t owner,
                 const char *action);

/* ---- parsing ------------------------------------------------------------ */

/* JSON object of the request body, checked against the allowed member names
 * (NULL-terminated); answers 400 itself and returns NULL on failure. */
json_t *svc_body_obj(const struct net_req *req, struct net_resp *resp, const char *const *allowed);

/* Every query argument carries a value ("name=..."); a bare "?name" answers
 * 400 naming it (the kit's dispatcher checks this for every route). */
bool svc_query_has_values(const struct net_req *req, struct net_resp *resp);

/* A canonical positive decimal id (1..INT64_MAX, no sign, no space, no
 * leading zero) from s; false otherwise. */
bool svc_id_parse(const char *s, int64_t *out);
/* The {name} path parameter as an id; answers 404 itself when malformed
 * (no such resource). */
bool svc_id_of_path(const struct net_req *req, struct net_resp *resp, const char *name,
                    int64_t *id);
/* The query argument name as an id (*id = 0 when absent); answers 400 itself
 * (field name) when present and not canonical. */
bool svc_id_of_query(const struct net_req *req, struct net_resp *resp, const char *name,
                     int64_t *id);

/* Reads the "cursor" and "limit" query arguments of a list keyed by a row id
 * (the cursor is the last id seen, 8 bytes big-endian; 0 = first page);
 * limit 1..max, def when absent. Answers 400 itself and returns false on
 * bad input. */
bool svc_page_of_query(const struct net_req *req, struct net_resp *resp, unsigned def, unsigned max,
                       size_t *limit, int64_t *after);

/* A listing keyed by row id, one page per request: sql selects the rows
 * with "id > $1 ... ORDER BY id LIMIT $2" (column 0 the id) and takes its
 * own parameters from $3 on, bound by bind (NULL: none); row turns the
 * current row into its item (new reference), or cols says how (above). svc_list_page reads cursor
 * and limit (400 itself), asks one row more than the page to know whether another follows, and
 * answers {"items", "next_cursor"} or the error. An item that needs queries of its own (a job with
 * its scripts) sets expand instead of row: sql then selects only the ids, and expand builds each
 * item from its id on the same connection once the page's ids are read (the cursor statement is
 * closed by then). */
/* ---- a row as JSON, column by column ------------------------------------
 *
 * Most items are a row's columns under their names: cols[i] says what
 * column i becomes (svc_row_json), and a list sets cols instead of row.
 * SQL NULL gives null, or leaves the key out with SVC_COL_OMIT_NULL. */
enum svc_col_kind {
    SVC_COL_SKIP, /* not shown (key NULL) */
    SVC_COL_INT,  /* integer */
    SVC_COL_ID,   /* integer shown as a decimal string (a row id) */
    SVC_COL_BOOL, /* integer, non-zero is true */
    SVC_COL_TEXT, /* string */
    SVC_COL_HEX,  /* blob as upper-case hex */
    SVC_COL_JSON, /* text holding JSON the service wrote: embedded as its value;
                   * text that does not parse is shown as a string */
};
#define SVC_COL_OMIT_NULL  1u /* SQL NULL: the key is left out */
#define SVC_COL_EMPTY_NULL 2u /* SVC_COL_TEXT: "" is shown as null */
struct svc_col {
    const char *key;
    enum svc_col_kind kind;
    unsigned flags;
};
/* The number of entries of a struct svc_col array. */
#define SVC_NCOLS(cols) (sizeof(cols) / sizeof((cols)[0]))
/* The JSON size svc_row_json parses in a SVC_COL_JSON column. */
#define SVC_COL_JSON_MAX 65536
/* The current row as an object (new reference in *item) of its n first
 * columns as cols describes them. */
ot_err svc_row_json(struct db_stmt *st, const struct svc_col *cols, size_t n, json_t **item);

struct svc_list {
    const char *sql;
    ot_err (*bind)(struct db_stmt *st, void *ctx);
    ot_err (*row)(struct db_stmt *st, void *ctx, json_t **item);
    ot_err (*expand)(struct db_conn *c, void *ctx, int64_t id, json_t **item);
    void *ctx;
    /* instead of row: the item is svc_row_json(cols, ncols) */
    const struct svc_col *cols;
    size_t ncols;
};
void svc_list_page(struct db *db, const struct net_req *req, struct net_resp *resp,
                   const struct svc_list *l);

/* ---- answers ------------------------------------------------------------ */

/* Adds "next_cursor": the cursor after row id next, or null when next is 0. */
ot_err svc_put_next_cursor(json_t *o, int64_t next);
/* Answers 200 {"items": [...], "next_cursor": ...}; next is the row id the
 * next page starts after, 0 on the last page. Takes *items in every case. */
ot_err svc_send_list(struct net_resp *resp, json_t **items, int64_t next);
/* Answers a storage or internal error (never a detail). */
void svc_fail(struct net_resp *resp, ot_err err);

/* ---- one transaction per change ---------------------------------------
 *
 * The change, its audit row and, on idempotent routes, the answer kept for
 * replays commit together: a crash at any point leaves all of them or none.
 * svc_tx_begin borrows a connection and begins (*c NULL on failure);
 * svc_tx_abort rolls back and gives it back (NULL *c: no-op); svc_tx_commit
 * keeps the answer (status, o) for replays when the route is idempotent
 * (scoped by principal id, as the host's ops.idem_get reads it), commits and
 * answers it, or on any failure rolls back and answers the error. It takes o
 * (NULL: out of memory); the body is serialised once, so the bytes kept are
 * the bytes sent. A change committed with its audit row (svc_audit on c)
 * marks the request (net_req_change_audited): the host writes no second
 * row for its success. */
ot_err svc_tx_begin(struct svc_kit *k, struct db_conn **c);
void svc_tx_abort(struct db_conn **c);
ot_err svc_tx_commit(struct db_conn **c, struct net_req *req, struct net_resp *resp, int status,
                     json_t *o);
/* Commits c's change whose answer comes later (an operation driven after the
 * commit, answered by its state): db_commit, and when the change carries its
 * audit row (svc_audit on c) the request is marked as svc_tx_commit does, so
 * its success gets no second row (a refusal or failure answered later still
 * gets the host's row). db_commit's error. */
ot_err svc_tx_commit_audited(struct db_conn *c, struct net_req *req);

#endif
