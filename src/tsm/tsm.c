/* TSM service: the pieces every handler shares (audit, the one ownership
 * check, list and body helpers) and the route table. Handlers validate
 * strictly (unknown fields and query arguments are rejected), answer
 * through net_resp_*, and check ownership through tsm_authz() only. The
 * handlers live in tsm_import.c, tsm_se.c, tsm_sd.c and tsm_admin.c. */
#define OT_LOG_COMPONENT "tsm.api"
#include "tsm/tsm.h"
#include "tsm/tsm_priv.h"

#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "core/thread.h"
#include "db/audit.h"
#include "db/authstore.h"
#include "db/db.h"
#include "db/idem.h"
#include "db/keystore.h"
#include "net/http.h"
#include "net/json.h"
#include "tsm/csv.h"
#include "tsm/registry.h"
#include "tsm/serec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- audit and authorisation ------------------------------------------ */

/* Records one service-level event (state change or ownership denial). A
 * failure is logged and returned (see tsm_priv.h). */
ot_err tsm_audit(struct tsm *t, struct db_conn *c, const struct net_req *req, const char *action,
                 const char *resource, const char *outcome)
{
    const struct net_principal *p = net_req_principal(req);
    struct audit_entry e;
    ot_err err;

    memset(&e, 0, sizeof(e));
    if (p != NULL) {
        e.principal_kind = p->kind;
        e.principal_id = p->id;
        snprintf(e.principal_name, sizeof(e.principal_name), "%s", p->name);
    }
    snprintf(e.action, sizeof(e.action), "%s", action);
    snprintf(e.resource, sizeof(e.resource), "%s", resource);
    snprintf(e.outcome, sizeof(e.outcome), "%s", outcome);
    snprintf(e.request_id, sizeof(e.request_id), "%s", net_req_request_id(req));
    err = c != NULL ? audit_append_tx(c, &e) : audit_append(t->db, &e);
    if (err != OT_OK) {
        OT_LOG_ERROR("req=%s audit of %s failed: %s", e.request_id, action, ot_strerror(err));
    }
    return err;
}

/* The one ownership check. OT_OK when the caller may touch a resource owned
 * by owner (a principal id; ignored for TSM_ACC_SHARED). Operators may touch
 * everything; a service provider only what it owns. Anything else is
 * OT_E_NOT_FOUND - the same answer as a missing resource, so existence does
 * not leak - and is audited as a denial. */
ot_err tsm_authz(struct tsm *t, const struct net_req *req, enum tsm_access acc, int64_t owner,
                 const char *action)
{
    const struct net_principal *p = net_req_principal(req);

    if (p == NULL) {
        return OT_E_AUTH;
    }
    if (p->kind == NET_P_OPERATOR) {
        return OT_OK;
    }
    if (acc == TSM_ACC_SHARED && p->kind == NET_P_SP) {
        return OT_OK;
    }
    if (acc == TSM_ACC_OWNED && p->id == owner) {
        return OT_OK;
    }
    tsm_audit(t, NULL, req, action, net_req_path(req), "denied");
    OT_LOG_INFO("req=%s principal=%lld denied %s on %s", net_req_request_id(req), (long long)p->id,
                action, net_req_path(req));
    return OT_E_NOT_FOUND;
}

/* ---- small helpers ------------------------------------------------------ */

/* Reads the "cursor" and "limit" query arguments of a list keyed by a row
 * id (the cursor is the last id seen, 8 bytes big-endian; 0 = first page).
 * Answers 400 itself and returns false on bad input. */
bool tsm_page_of_query(const struct net_req *req, struct net_resp *resp, unsigned def, unsigned max,
                       size_t *limit, int64_t *after)
{
    struct json_page page;
    struct json_err jerr;
    ot_err err;

    memset(&jerr, 0, sizeof(jerr));
    err = json_page_parse(net_req_query(req, "cursor"), net_req_query(req, "limit"), def, max,
                          &page, &jerr);
    if (err != OT_OK) {
        net_resp_json_error(resp, err, &jerr);
        return false;
    }
    if (page.after_len != 0 && page.after_len != 8) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "bad cursor", "cursor");
        return false;
    }
    *after = 0;
    if (page.after_len == 8) {
        *after =
            (int64_t)(((uint64_t)ot_get_u32be(page.after) << 32) | ot_get_u32be(page.after + 4));
    }
    *limit = page.limit;
    return true;
}

/* Adds "next_cursor": the cursor after row id next, or null when next is 0. */
ot_err tsm_put_next_cursor(json_t *o, int64_t next)
{
    uint8_t cur[8];

    if (next == 0) {
        return json_put_cursor(o, "next_cursor", NULL, 0);
    }
    ot_put_u32be(cur, (uint32_t)((uint64_t)next >> 32));
    ot_put_u32be(cur + 4, (uint32_t)next);
    return json_put_cursor(o, "next_cursor", cur, sizeof(cur));
}

/* Answers 200 {"items": [...], "next_cursor": ...}; next is the row id the
 * next page starts after, 0 on the last page. Takes *items in every case. */
ot_err tsm_send_list(struct net_resp *resp, json_t **items, int64_t next)
{
    json_t *o = json_obj_new();
    json_t *arr = *items;
    ot_err err = OT_OK;

    *items = NULL;
    if (o == NULL) {
        json_free(arr);
        return OT_E_NOMEM;
    }
    OT_TRY(json_put(o, "items", arr));
    OT_TRY(tsm_put_next_cursor(o, next));
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    json_free(o);
    return err;
}

/* Answers a storage or internal error (never a detail). */
void tsm_fail(struct net_resp *resp, ot_err err)
{
    net_resp_error(resp, err, NULL, NULL, NULL);
}

/* JSON object of the request body; answers 400 itself on failure. */
json_t *tsm_body_obj(const struct net_req *req, struct net_resp *resp, const char *const *allowed)
{
    struct json_err jerr;
    json_t *doc = NULL;
    ot_err err;

    memset(&jerr, 0, sizeof(jerr));
    err = net_req_json(req, &doc, &jerr);
    if (err != OT_OK) {
        net_resp_json_error(resp, err, &jerr);
        return NULL;
    }
    if (!json_is_obj(doc)) {
        json_free(doc);
        net_resp_error(resp, OT_E_FORMAT, NULL, "the body must be a JSON object", NULL);
        return NULL;
    }
    err = json_check_fields(doc, allowed, "", &jerr);
    if (err != OT_OK) {
        json_free(doc);
        net_resp_json_error(resp, err, &jerr);
        return NULL;
    }
    return doc;
}

/* The SE named by {cin}; answers 400/404/503 itself when there is none. */
bool tsm_se_of_path(struct tsm *t, const struct net_req *req, struct net_resp *resp,
                    struct tsm_se *se)
{
    const char *raw = net_req_param(req, "cin");
    char cin[TSM_CIN_MAX + 1];
    ot_err err;

    if (raw == NULL || tsm_serec_norm_cin(raw, cin, sizeof(cin)) != OT_OK) {
        net_resp_error(resp, OT_E_FORMAT, NULL,
                       "cin must be 8 to 32 hexadecimal digits, an even count", "cin");
        return false;
    }
    err = tsm_se_fetch(t, TSM_BY_CIN, cin, se);
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such secure element" : NULL,
                       NULL);
        return false;
    }
    return true;
}

/* ---- one transaction per change -----------------------------------------
 *
 * Each administrative change (principal create, certificate bind, token
 * issue and revoke, security-domain assign) commits in one transaction with its audit row and, on
 * the routes that take an Idempotency-Key, with the answer kept for replays. A crash at any point
 * leaves all of them or none: no committed change without its audit row, and no committed change
 * whose retry would run again (and answer differently, e.g. 200 "exists" instead of the first 201).
 * The records are scoped as tsmd's ops.idem_get reads them: by principal id. */

#define TSM_IDEM_HEADER "Idempotency-Key"

ot_err tsm_tx_begin(struct tsm *t, struct db_conn **c)
{
    ot_err err = OT_OK;

    *c = NULL;
    OT_TRY(db_acquire(t->db, c));
    OT_TRY(db_begin(*c));
out:
    if (err != OT_OK) {
        db_release(*c);
        *c = NULL;
    }
    return err;
}

void tsm_tx_abort(struct db_conn **c)
{
    if (*c != NULL) {
        (void)db_rollback(*c);
        db_release(*c);
        *c = NULL;
    }
}

ot_err tsm_tx_commit(struct db_conn **c, struct net_req *req, struct net_resp *resp, int status,
                     json_t *o)
{
    const struct net_principal *p = net_req_principal(req);
    const char *key = NULL;
    const uint8_t *hash = NULL;
    char *body = NULL;
    size_t len = 0;
    bool idem = net_req_idem(req, &key, &hash);
    bool taken = false; /* the key's record exists already */
    ot_err err = OT_OK;

    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(json_serialize(o, &body, &len));
    if (idem) {
        if (p == NULL) {
            OT_FAIL(OT_E_INTERNAL);
        }
        /* OT_E_CONFLICT: another request with this key (another process
         * on this database) committed first; the retry replays its answer. */
        err = idem_put_tx(*c, p->id, key, hash, status, NULL, body, len, NULL);
        taken = err == OT_E_CONFLICT;
        OT_TRY(err);
    }
    OT_TRY(db_commit(*c));
    db_release(*c);
    *c = NULL;
    if (idem) {
        net_req_idem_stored(req);
    }
    net_resp_bytes(resp, status, "application/json", body, len);
out:
    if (err != OT_OK) {
        tsm_tx_abort(c);
        if (taken) {
            net_resp_error(resp, err, NULL, "a request with this Idempotency-Key is in progress",
                           TSM_IDEM_HEADER);
        } else {
            OT_LOG_ERROR("req_id=%s %s %s not committed: %s", net_req_request_id(req),
                         net_req_method(req), net_req_route(req), ot_strerror(err));
            tsm_fail(resp, err);
        }
    }
    if (body != NULL) {
        ot_mem_wipe(body, len); /* may hold a token */
    }
    free(body);
    json_free(o);
    return err;
}

/* ---- the lookup cache ---------------------------------------------------- */

ot_err tsm_se_fetch(struct tsm *t, enum tsm_by by, const char *key, struct tsm_se *out)
{
    uint64_t gen;
    ot_err err;

    if (t->cache == NULL) {
        return tsm_registry_get(t->db, by, key, out);
    }
    if (tsm_secache_get(t->cache, by, key, out) == OT_OK) {
        return OT_OK;
    }
    gen = tsm_secache_gen(t->cache);
    err = tsm_registry_get(t->db, by, key, out);
    if (err == OT_OK) {
        tsm_secache_put(t->cache, out, gen);
    }
    return err;
}

uint64_t tsm_cache_gen(const struct tsm *t)
{
    return t->cache != NULL ? tsm_secache_gen(t->cache) : 0;
}

void tsm_cache_put(struct tsm *t, const struct tsm_se *se, uint64_t gen)
{
    if (t->cache != NULL) {
        tsm_secache_put(t->cache, se, gen);
    }
}

void tsm_cache_invalidate(struct tsm *t, const char *cin)
{
    if (t->cache != NULL) {
        tsm_secache_invalidate(t->cache, cin);
    }
}

bool tsm_cache_stats(struct tsm *t, struct tsm_secache_stats *out)
{
    if (t == NULL || t->cache == NULL) {
        memset(out, 0, sizeof(*out));
        return false;
    }
    tsm_secache_stats(t->cache, out);
    return true;
}

/* Other nodes' changes (PostgreSQL). Until the listener is up, and while it
 * is down, the cache is offline: a change it did not hear about could
 * otherwise be served stale forever. */
static void tsm_on_note(void *ctx, enum db_note what, const char *payload)
{
    struct tsm *t = ctx;

    switch (what) {
    case DB_NOTE_UP:
        tsm_secache_set_online(t->cache, true);
        break;
    case DB_NOTE_DOWN:
        tsm_secache_set_online(t->cache, false);
        break;
    case DB_NOTE_MSG:
        if (strcmp(payload, TSM_SE_ALL) == 0) {
            tsm_secache_clear(t->cache);
        } else {
            tsm_secache_invalidate(t->cache, payload);
        }
        break;
    }
}

/* Warm-up: pages through the registry in id order and offers each row to
 * the cache, until the end or the first eviction (the budget is reached).
 * Waits for the cache to be online (PostgreSQL: listening). A page whose
 * puts were dropped because the generation moved is not retried: those
 * rows come in on their first lookup. */
#define TSM_WARM_PAGE TSM_LIST_MAX

static void *tsm_warm_main(void *arg)
{
    struct tsm *t = arg;
    struct tsm_se *page = malloc(TSM_WARM_PAGE * sizeof(*page));
    struct tsm_secache_stats st;
    struct timespec t0, t1, nap = {0, 50000000L};
    int64_t after = 0;
    bool more = true;
    size_t n, i;
    ot_err err = OT_OK;

    if (page == NULL) {
        OT_LOG_WARN("SE cache warm-up: no memory");
        return NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (more && !atomic_load(&t->warm_stop)) {
        if (!tsm_secache_online(t->cache)) {
            nanosleep(&nap, NULL);
            continue;
        }
        uint64_t gen = tsm_secache_gen(t->cache);
        n = 0;
        err = tsm_registry_list(t->db, after, NULL, NULL, TSM_WARM_PAGE, page, &n, &more);
        if (err != OT_OK) {
            break;
        }
        for (i = 0; i < n; i++) {
            tsm_secache_put(t->cache, &page[i], gen);
        }
        tsm_secache_stats(t->cache, &st);
        if (n == 0 || st.evictions != 0) {
            break;
        }
        after = page[n - 1].id;
    }
    tsm_secache_stats(t->cache, &st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (err != OT_OK) {
        OT_LOG_WARN("SE cache warm-up stopped: %s", ot_strerror(err));
    } else {
        OT_LOG_INFO("SE cache warm: %llu records, %llu bytes in %.1f s",
                    (unsigned long long)st.entries, (unsigned long long)st.bytes,
                    (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    }
    free(page);
    return NULL;
}

/* ---- routes ------------------------------------------------------------- */

#define TSM_OP    NET_P_OPERATOR
#define TSM_OP_SP (NET_P_OPERATOR | NET_P_SP)

/* Query arguments per route (the server rejects any other). */
static const char *const tsm_q_se_query[] = {"msisdn", "imsi",   "fields", "mno",
                                             "type",   "cursor", "limit",  NULL};
static const char *const tsm_q_token_list[] = {"principal_id", "limit", NULL};
static const char *const tsm_q_audit_list[] = {"cursor",       "limit",      "action",
                                               "principal_id", "request_id", NULL};

static const struct net_route tsm_route_table[] = {
    {"POST", "/tsm/v1/secure-elements:import", TSM_OP, true, tsm_h_import, NULL},
    {"GET", "/tsm/v1/secure-elements", TSM_OP_SP, false, tsm_h_se_query, tsm_q_se_query},
    {"GET", "/tsm/v1/secure-elements/{cin}", TSM_OP_SP, false, tsm_h_se_get, NULL},
    {"GET", "/tsm/v1/secure-elements/{cin}/security-domains", TSM_OP_SP, false, tsm_h_sd_list,
     (const char *const[]){"cursor", "limit", NULL}},
    {"POST", "/tsm/v1/secure-elements/{cin}/security-domains", TSM_OP, true, tsm_h_sd_assign, NULL},
    {"GET", "/tsm/v1/secure-elements/{cin}/security-domains/{aid}", TSM_OP_SP, false, tsm_h_sd_get,
     NULL},
    {"POST", "/tsm/v1/principals", TSM_OP, true, tsm_h_principal_create, NULL},
    {"POST", "/tsm/v1/principals/{id}/certificates", TSM_OP, true, tsm_h_cert_bind, NULL},
    {"POST", "/tsm/v1/tokens", TSM_OP, false, tsm_h_token_issue, NULL},
    {"GET", "/tsm/v1/tokens", NET_P_ANY, false, tsm_h_token_list, tsm_q_token_list},
    {"DELETE", "/tsm/v1/tokens/{id}", NET_P_ANY, false, tsm_h_token_revoke, NULL},
    {"GET", "/tsm/v1/audit", TSM_OP, false, tsm_h_audit_list, tsm_q_audit_list},
    {"GET", "/tsm/v1/audit/verify", TSM_OP, false, tsm_h_audit_verify, NULL},
};

const struct net_route *tsm_routes(size_t *n)
{
    *n = sizeof(tsm_route_table) / sizeof(tsm_route_table[0]);
    return tsm_route_table;
}

ot_err tsm_add_routes(struct tsm *t, struct net_server *srv)
{
    size_t n = 0;
    const struct net_route *r = tsm_routes(&n);

    return net_server_add_routes(srv, r, n, t);
}

ot_err tsm_new(const struct tsm_cfg *cfg, struct tsm **out)
{
    ot_err err = OT_OK;
    struct tsm *t = NULL;

    *out = NULL;
    if (cfg == NULL || cfg->db == NULL || cfg->auth == NULL || cfg->ks == NULL
        || cfg->import_batch > TSM_IMPORT_BATCH_DEFAULT * 4) {
        return OT_E_ARG;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return OT_E_NOMEM;
    }
    t->db = cfg->db;
    t->auth = cfg->auth;
    t->ks = cfg->ks;
    t->batch = cfg->import_batch != 0 ? cfg->import_batch : TSM_IMPORT_BATCH_DEFAULT;
    OT_TRY(tsm_registry_migrate(t->db));
    if (cfg->cache_bytes != 0) {
        OT_TRY(tsm_secache_new(cfg->cache_bytes, &t->cache));
        if (db_kind(t->db) == DB_PG) {
            tsm_secache_set_online(t->cache, false);
            OT_TRY(db_listen(t->db, TSM_SE_CHANNEL, tsm_on_note, t, &t->listener));
        }
        if (cfg->cache_warm) {
            OT_TRY(ot_thread_start(&t->warm, tsm_warm_main, t));
            t->warm_started = true;
        }
    }
    *out = t;
    t = NULL;
out:
    tsm_free(t);
    return err;
}

void tsm_free(struct tsm *t)
{
    if (t == NULL) {
        return;
    }
    if (t->warm_started) {
        atomic_store(&t->warm_stop, true);
        pthread_join(t->warm, NULL);
    }
    db_listener_free(t->listener); /* before the cache: its thread uses it */
    tsm_secache_free(t->cache);
    free(t);
}
