/* testsvc: the host's test fixture service (testsvc.h). */
#define OT_LOG_COMPONENT "testsvc"
#include "testsvc/testsvc.h"

#include "core/log.h"
#include "db/db.h"
#include "net/config.h"
#include "net/http.h"
#include "net/json.h"
#include "svc/kit.h"
#include "svc/svc.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct testsvc {
    struct svc_kit *kit;
    struct db *db;
    char instance[SVC_NAME_MAX + 1];
    char prefix[SVC_PREFIX_MAX + 1];
    int64_t max_items;
    atomic_uint_fast64_t coarse; /* events since the last coarse audit row */
};

static const struct db_migration testsvc_migrations[] = {
    {1,
     "CREATE TABLE testsvc_items ("
     " id INTEGER PRIMARY KEY,"
     " instance TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " value TEXT NOT NULL,"
     " owner BIGINT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " UNIQUE (instance, name));"
     "CREATE TABLE testsvc_events ("
     " id INTEGER PRIMARY KEY,"
     " instance TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " principal_id BIGINT NOT NULL,"
     " created_at BIGINT NOT NULL)",
     NULL},
};

static const struct cfg_opt testsvc_opts[] = {
    {"testsvc.max_items",
     CFG_INT,
     {.i = 1000},
     1,
     1000000,
     0,
     "Test fixture: items one instance holds (409 beyond)."},
};

static bool testsvc_name_ok(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        if (n >= TESTSVC_NAME_MAX
            || !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '-')) {
            return false;
        }
    }
    return n > 0;
}

static json_t *testsvc_item_json(const char *name, const char *value, int64_t owner)
{
    json_t *o = json_obj_new();

    if (o != NULL
        && (json_put_str(o, "name", name) != OT_OK || json_put_str(o, "value", value) != OT_OK
            || json_put_int(o, "owner_id", owner) != OT_OK)) {
        json_free(o);
        o = NULL;
    }
    return o;
}

/* Row count and the stored row of (instance, name) on c. */
static ot_err testsvc_lookup(struct db_conn *c, const char *instance, const char *name, char *value,
                             size_t cap, int64_t *owner, int64_t *count)
{
    struct db_stmt *st = NULL;
    bool row = false;
    size_t len = cap;
    ot_err err = OT_OK;

    value[0] = '\0';
    *owner = 0;
    if (count != NULL) {
        OT_TRY(db_prepare(c, "SELECT COUNT(*) FROM testsvc_items WHERE instance = $1", &st));
        OT_TRY(db_bind_text(st, 1, instance));
        OT_TRY(db_step(st, &row));
        OT_TRY(db_col_int64(st, 0, count));
        db_reset(st);
        st = NULL;
    }
    OT_TRY(db_prepare(c, "SELECT value, owner FROM testsvc_items WHERE instance = $1 AND name = $2",
                      &st));
    OT_TRY(db_bind_text(st, 1, instance));
    OT_TRY(db_bind_text(st, 2, name));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_text_copy(st, 0, value, &len));
    OT_TRY(db_col_int64(st, 1, owner));
out:
    db_reset(st);
    return err;
}

static void testsvc_h_item_put(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"name", "value", NULL};
    struct testsvc *s = ctx;
    const struct net_principal *p = net_req_principal(req);
    struct json_err jerr;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    json_t *doc;
    const char *name = NULL;
    const char *value = NULL;
    char have[TESTSVC_VALUE_MAX + 1];
    char res[256];
    int64_t owner = 0;
    int64_t count = 0;
    bool row = false;
    int status = 201;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_str(doc, "name", 1, TESTSVC_NAME_MAX, &name, &jerr) != OT_OK
        || json_get_str(doc, "value", 0, TESTSVC_VALUE_MAX, &value, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto done;
    }
    if (!testsvc_name_ok(name)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "name must be 1 to 64 of a-z, 0-9 and -", "name");
        goto done;
    }
    OT_TRY(svc_tx_begin(s->kit, &c));
    err = testsvc_lookup(c, s->instance, name, have, sizeof(have), &owner, &count);
    if (err == OT_OK) {
        /* Another principal's item is not there for the caller. */
        if (owner != p->id && p->kind != NET_P_OPERATOR) {
            svc_tx_abort(&c);
            err = svc_authz(s->kit, req, SVC_ACC_OWNED, owner, "testsvc.item.put");
            net_resp_error(resp, err == OT_OK ? OT_E_CONFLICT : err, NULL, NULL, NULL);
            err = OT_OK;
            goto done;
        }
        if (strcmp(have, value) != 0) {
            net_resp_error(resp, OT_E_CONFLICT, NULL, "this item exists with another value",
                           "value");
            goto done;
        }
        status = 200;
    } else if (err == OT_E_NOT_FOUND) {
        err = OT_OK;
        if (count >= s->max_items) {
            net_resp_error(resp, OT_E_CONFLICT, NULL, "this instance holds max_items items", NULL);
            goto done;
        }
        OT_TRY(db_prepare(c,
                          "INSERT INTO testsvc_items (instance, name, value, owner, created_at)"
                          " VALUES ($1, $2, $3, $4, $5)",
                          &st));
        OT_TRY(db_bind_text(st, 1, s->instance));
        OT_TRY(db_bind_text(st, 2, name));
        OT_TRY(db_bind_text(st, 3, value));
        OT_TRY(db_bind_int64(st, 4, p->id));
        OT_TRY(db_bind_int64(st, 5, (int64_t)time(NULL)));
        OT_TRY(db_step(st, &row));
        db_reset(st);
        st = NULL;
        owner = p->id;
        snprintf(res, sizeof(res), "%s/items/%s", s->prefix, name);
        OT_TRY(svc_audit(s->kit, c, req, "testsvc.item.put", res, "ok"));
    }
    OT_TRY(err);
    (void)svc_tx_commit(&c, req, resp, status, testsvc_item_json(name, value, owner));
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    svc_tx_abort(&c);
    json_free(doc);
}

static void testsvc_h_item_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct testsvc *s = ctx;
    const char *name = net_req_param(req, "name");
    struct db_conn *c = NULL;
    char value[TESTSVC_VALUE_MAX + 1];
    int64_t owner = 0;
    json_t *o;
    ot_err err = OT_OK;

    if (name == NULL || !testsvc_name_ok(name)) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such item", NULL);
        return;
    }
    OT_TRY(db_acquire(s->db, &c));
    err = testsvc_lookup(c, s->instance, name, value, sizeof(value), &owner, NULL);
    db_release(c);
    OT_TRY(err);
    OT_TRY(svc_authz(s->kit, req, SVC_ACC_OWNED, owner, "testsvc.item.get"));
    o = testsvc_item_json(name, value, owner);
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    net_resp_json(resp, 200, o);
out:
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such item" : NULL, NULL);
    }
}

/* The caller's items (an operator's: all) of this instance. */
struct testsvc_list {
    const struct testsvc *s;
    int64_t owner; /* 0: every owner */
};

static ot_err testsvc_list_bind(struct db_stmt *st, void *ctx)
{
    const struct testsvc_list *l = ctx;
    ot_err err = OT_OK;

    OT_TRY(db_bind_text(st, 3, l->s->instance));
    OT_TRY(db_bind_int64(st, 4, l->owner));
out:
    return err;
}

static ot_err testsvc_list_row(struct db_stmt *st, void *ctx, json_t **item)
{
    char name[TESTSVC_NAME_MAX + 1];
    char value[TESTSVC_VALUE_MAX + 1];
    size_t nl = sizeof(name);
    size_t vl = sizeof(value);
    int64_t owner = 0;
    ot_err err = OT_OK;

    (void)ctx;
    OT_TRY(db_col_text_copy(st, 1, name, &nl));
    OT_TRY(db_col_text_copy(st, 2, value, &vl));
    OT_TRY(db_col_int64(st, 3, &owner));
    *item = testsvc_item_json(name, value, owner);
    if (*item == NULL) {
        err = OT_E_NOMEM;
    }
out:
    return err;
}

static void testsvc_h_item_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct testsvc *s = ctx;
    const struct net_principal *p = net_req_principal(req);
    struct testsvc_list tl = {s, p->kind == NET_P_OPERATOR ? 0 : p->id};
    const struct svc_list l = {
        .sql = "SELECT id, name, value, owner FROM testsvc_items WHERE id > $1 AND instance = $3"
               " AND ($4 = 0 OR owner = $4) ORDER BY id LIMIT $2",
        .bind = testsvc_list_bind,
        .row = testsvc_list_row,
        .ctx = &tl};

    svc_list_page(s->db, req, resp, &l);
}

/* One event row; audited per request (coarse false: the row commits with
 * it) or by the service, one row per TESTSVC_COARSE_EVERY events. */
static void testsvc_event(struct net_req *req, struct net_resp *resp, struct testsvc *s,
                          bool coarse)
{
    static const char *const allowed[] = {"name", NULL};
    const struct net_principal *p = net_req_principal(req);
    struct json_err jerr;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    json_t *doc;
    json_t *o = NULL;
    const char *name = NULL;
    char res[256];
    bool row = false;
    int64_t id = 0;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_str(doc, "name", 1, TESTSVC_NAME_MAX, &name, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        json_free(doc);
        return;
    }
    OT_TRY(svc_tx_begin(s->kit, &c));
    OT_TRY(db_prepare(c,
                      "INSERT INTO testsvc_events (instance, name, principal_id, created_at)"
                      " VALUES ($1, $2, $3, $4) RETURNING id",
                      &st));
    OT_TRY(db_bind_text(st, 1, s->instance));
    OT_TRY(db_bind_text(st, 2, name));
    OT_TRY(db_bind_int64(st, 3, p->id));
    OT_TRY(db_bind_int64(st, 4, (int64_t)time(NULL)));
    OT_TRY(db_step(st, &row));
    OT_TRY(db_col_int64(st, 0, &id));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "%s/events/%lld", s->prefix, (long long)id);
    if (!coarse) {
        OT_TRY(svc_audit(s->kit, c, req, "testsvc.event", res, "ok"));
    } else if ((atomic_fetch_add(&s->coarse, 1) + 1) % TESTSVC_COARSE_EVERY == 0) {
        char outcome[64];
        snprintf(outcome, sizeof(outcome), "ok events=%u", TESTSVC_COARSE_EVERY);
        OT_TRY(svc_audit(s->kit, c, req, "testsvc.events", res, outcome));
    }
    o = json_obj_new();
    if (o != NULL && json_put_int(o, "id", id) != OT_OK) {
        json_free(o);
        o = NULL;
    }
    (void)svc_tx_commit(&c, req, resp, 201, o);
out:
    db_reset(st);
    svc_tx_abort(&c);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
    json_free(doc);
}

static void testsvc_h_event(struct net_req *req, struct net_resp *resp, void *ctx)
{
    testsvc_event(req, resp, ctx, false);
}

static void testsvc_h_event_coarse(struct net_req *req, struct net_resp *resp, void *ctx)
{
    testsvc_event(req, resp, ctx, true);
}

#define TESTSVC_ALLOW (NET_P_OPERATOR | NET_P_SP)

static const char *const testsvc_q_page[] = {"cursor", "limit", NULL};

static const struct svc_route testsvc_route_table[] = {
    {"POST", "/items", TESTSVC_ALLOW, true, testsvc_h_item_put, NULL, 0},
    {"GET", "/items", TESTSVC_ALLOW, false, testsvc_h_item_list, testsvc_q_page, 0},
    {"GET", "/items/{name}", TESTSVC_ALLOW, false, testsvc_h_item_get, NULL, 0},
    {"POST", "/events", TESTSVC_ALLOW, false, testsvc_h_event, NULL, 0},
    {"POST", "/events-coarse", TESTSVC_ALLOW, false, testsvc_h_event_coarse, NULL,
     SVC_R_COARSE_AUDIT},
};

static const struct svc_route *testsvc_routes(size_t *n)
{
    *n = sizeof(testsvc_route_table) / sizeof(testsvc_route_table[0]);
    return testsvc_route_table;
}

static ot_err testsvc_create(const struct svc_env *env, void **out)
{
    struct testsvc *s = calloc(1, sizeof(*s));

    *out = NULL;
    if (s == NULL) {
        return OT_E_NOMEM;
    }
    s->kit = env->kit;
    s->db = env->db;
    snprintf(s->instance, sizeof(s->instance), "%s", env->instance);
    snprintf(s->prefix, sizeof(s->prefix), "%s", env->prefix);
    s->max_items = svc_cfg_int(env, "max_items");
    *out = s;
    return OT_OK;
}

static void testsvc_destroy(void *svc)
{
    free(svc);
}

const struct svc_def testsvc_def = {
    .name = "testsvc",
    .summary = "Test fixture: named instances with state of their own (not for production).",
    .instances = true,
    .opts = testsvc_opts,
    .n_opts = sizeof(testsvc_opts) / sizeof(testsvc_opts[0]),
    .migrations = testsvc_migrations,
    .n_migrations = sizeof(testsvc_migrations) / sizeof(testsvc_migrations[0]),
    .create = testsvc_create,
    .destroy = testsvc_destroy,
    .routes = testsvc_routes,
    .metrics = NULL,
    .ready = NULL,
};
