/* Private to src/tsm: the TSM service's state and the helpers its handler
 * files (tsm.c, tsm_import.c, tsm_se.c, tsm_sd.c, tsm_admin.c) share. */
#ifndef OT_TSM_TSM_PRIV_H
#define OT_TSM_TSM_PRIV_H

#include "core/err.h"
#include "db/db.h"
#include "net/http.h"
#include "net/json.h"
#include "tsm/registry.h"
#include "tsm/secache.h"
#include "tsm/tsm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TSM_LIST_DEF 100u /* default page size of the listings */

struct tsm {
    struct db *db;
    struct authstore *auth;
    struct keystore *ks;
    unsigned batch;
    struct tsm_secache *cache;    /* NULL: lookups read storage */
    struct db_listener *listener; /* PostgreSQL: other nodes' changes */
    pthread_t warm;               /* cache warm-up (cfg.cache_warm) */
    bool warm_started;
    atomic_bool warm_stop;
};

enum tsm_access {
    TSM_ACC_SHARED, /* registry data every SP may read (SE data) */
    TSM_ACC_OWNED,  /* a resource owned by one SP (an SD, a token) */
};

/* Records one service-level event (state change or ownership denial) in
 * the audit log, inside c's transaction when c is not NULL. A failure is
 * logged and returned: a caller whose change shares c's transaction rolls
 * it back (the change must not commit without its audit row); with c NULL
 * the answer was decided already and the result may be ignored. */
ot_err tsm_audit(struct tsm *t, struct db_conn *c, const struct net_req *req, const char *action,
                 const char *resource, const char *outcome);

/* The one ownership check. OT_OK when the caller may touch a resource owned
 * by owner (a principal id; ignored for TSM_ACC_SHARED). Operators may touch
 * everything; a service provider only what it owns. Anything else is
 * OT_E_NOT_FOUND - the same answer as a missing resource, so existence does
 * not leak - and is audited as a denial. */
ot_err tsm_authz(struct tsm *t, const struct net_req *req, enum tsm_access acc, int64_t owner,
                 const char *action);

/* Reads the "cursor" and "limit" query arguments of a list keyed by a row
 * id (the cursor is the last id seen, 8 bytes big-endian; 0 = first page).
 * Answers 400 itself and returns false on bad input. */
bool tsm_page_of_query(const struct net_req *req, struct net_resp *resp, unsigned def, unsigned max,
                       size_t *limit, int64_t *after);

/* Adds "next_cursor": the cursor after row id next, or null when next is 0. */
ot_err tsm_put_next_cursor(json_t *o, int64_t next);

/* Answers 200 {"items": [...], "next_cursor": ...}; next is the row id the
 * next page starts after, 0 on the last page. Takes *items in every case. */
ot_err tsm_send_list(struct net_resp *resp, json_t **items, int64_t next);

/* Answers a storage or internal error (never a detail). */
void tsm_fail(struct net_resp *resp, ot_err err);

/* JSON object of the request body, checked against the allowed member
 * names; answers 400 itself and returns NULL on failure. */
json_t *tsm_body_obj(const struct net_req *req, struct net_resp *resp, const char *const *allowed);

/* One SE by a normalised key, from the cache when it has it, else from
 * storage (and then offered to the cache). OT_E_NOT_FOUND if none. */
ot_err tsm_se_fetch(struct tsm *t, enum tsm_by by, const char *key, struct tsm_se *out);

/* Write-through for writers: read the generation before the transaction
 * that writes se, and offer se after its commit (secache.h). A writer that
 * changes or deletes an SE calls tsm_cache_invalidate after its commit. */
uint64_t tsm_cache_gen(const struct tsm *t);
void tsm_cache_put(struct tsm *t, const struct tsm_se *se, uint64_t gen);
void tsm_cache_invalidate(struct tsm *t, const char *cin);

/* One transaction per change (tsm.c): the change, its audit row and, on
 * idempotent routes, the answer kept for replays commit together.
 * tsm_tx_begin borrows a connection and begins (*c NULL on failure);
 * tsm_tx_abort rolls back and gives it back (NULL *c: no-op); tsm_tx_commit
 * keeps the answer (status, o) for replays when the route is idempotent,
 * commits and answers it, or on any failure rolls back and answers the
 * error. It takes o (NULL: out of memory); the body is serialised once, so
 * the bytes kept are the bytes sent. */
ot_err tsm_tx_begin(struct tsm *t, struct db_conn **c);
void tsm_tx_abort(struct db_conn **c);
ot_err tsm_tx_commit(struct db_conn **c, struct net_req *req, struct net_resp *resp, int status,
                     json_t *o);

/* The SE named by {cin}; answers 400/404/503 itself when there is none. */
bool tsm_se_of_path(struct tsm *t, const struct net_req *req, struct net_resp *resp,
                    struct tsm_se *se);

/* Route handlers (net_handler_fn), registered in tsm.c's route table. */
void tsm_h_import(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_se_query(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_se_get(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_sd_list(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_sd_get(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_sd_assign(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_principal_create(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_cert_bind(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_token_issue(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_token_list(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_token_revoke(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_audit_list(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_audit_verify(struct net_req *req, struct net_resp *resp, void *ctx);

#endif
